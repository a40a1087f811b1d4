// One named export of an NBD server (proto.md "Newstyle negotiation": export names, NBD_OPT_LIST): a VirtualDisk
// served read-only to any number of clients, or writable to one client at a time.
using VDisk.Engine.Core;

namespace VDisk.Engine.Nbd;

/// <summary>A named disk an <see cref="NbdServer"/> serves.</summary>
public sealed class NbdExport
{
    private int _clients;

    /// <summary>An export of <paramref name="disk"/> under <paramref name="name"/> (may be empty: the default export).</summary>
    /// <param name="name">The export name clients ask for; at most 4096 bytes of UTF-8.</param>
    /// <param name="disk">The guest view served; the server disposes it when it is disposed.</param>
    /// <param name="writable">Accept writes (the disk must be open writable); only one client at a time is then allowed.</param>
    /// <param name="description">A human-readable description sent to clients that ask (NBD_INFO_DESCRIPTION).</param>
    public NbdExport(string name, VirtualDisk disk, bool writable = false, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(disk);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > NbdProtocol.MaxNameLength)
            throw VDiskException.Invalid(disk.Path, $"The export name is longer than {NbdProtocol.MaxNameLength} bytes.");
        if (writable && !disk.CanWrite)
            throw VDiskException.Invalid(disk.Path, $"{disk.Path}: a writable export needs the image opened for writing.");
        Name = name;
        Disk = disk;
        Writable = writable;
        Description = description;
    }

    /// <summary>The export name.</summary>
    public string Name { get; }
    /// <summary>The disk served.</summary>
    public VirtualDisk Disk { get; }
    /// <summary>True when clients may write.</summary>
    public bool Writable { get; }
    /// <summary>The description, or null.</summary>
    public string? Description { get; }
    /// <summary>Clients in the transmission phase on this export now.</summary>
    public int ClientCount => Volatile.Read(ref _clients);

    /// <summary>The transmission flags (proto.md "Transmission flags") of this export.</summary>
    internal ushort TransmissionFlags
    {
        get
        {
            ushort flags = NbdProtocol.TxHasFlags | NbdProtocol.TxSendFlush;
            if (Writable)
                flags |= NbdProtocol.TxSendFua | NbdProtocol.TxSendTrim | NbdProtocol.TxSendWriteZeroes;
            else
                flags |= NbdProtocol.TxReadOnly | NbdProtocol.TxCanMultiConn; // read-only: every connection sees the same data
            return flags;
        }
    }

    /// <summary>Takes a client slot: always for a read-only export, only when free for a writable one.</summary>
    internal bool TryAttach()
    {
        if (!Writable)
        {
            Interlocked.Increment(ref _clients);
            return true;
        }
        return Interlocked.CompareExchange(ref _clients, 1, 0) == 0;
    }

    /// <summary>Gives back the slot <see cref="TryAttach"/> took.</summary>
    internal void Detach() => Interlocked.Decrement(ref _clients);
}
