// What Export-VDisk writes: one running NBD export of an image (Path, Name, Uri a client connects to, Port or
// UnixSocket, Writable, live ClientCount, StartTime). Stop-VDiskExport takes these objects from the pipeline.
using VDisk.Engine.Nbd;

namespace VDisk.PowerShell;

/// <summary>An image served over NBD by Export-VDisk.</summary>
public sealed class VDiskExport
{
    private static int _lastId;

    internal VDiskExport(NbdServer server, string path, string name, int? port, string? unixSocket, bool writable, string format)
    {
        Server = server;
        Id = Interlocked.Increment(ref _lastId);
        Path = path;
        Name = name;
        Port = port;
        UnixSocket = unixSocket;
        Writable = writable;
        Format = format;
        StartTime = DateTime.Now;
        string escaped = System.Uri.EscapeDataString(name);
        this.Uri = port is { } p ? $"nbd://127.0.0.1:{p}/{escaped}" : $"nbd+unix:///{escaped}?socket={unixSocket}";
    }

    internal NbdServer Server { get; }

    /// <summary>A number that identifies the export in this session.</summary>
    public int Id { get; }
    /// <summary>Full path of the exported image (the top of its chain).</summary>
    public string Path { get; }
    /// <summary>The image format.</summary>
    public string Format { get; }
    /// <summary>The NBD export name ("" is the default export).</summary>
    public string Name { get; }
    /// <summary>The address clients use: nbd://127.0.0.1:port/name, or nbd+unix:///name?socket=path for a Unix socket only.</summary>
    public string Uri { get; }
    /// <summary>The TCP port on 127.0.0.1, or null when only a Unix socket is served.</summary>
    public int? Port { get; }
    /// <summary>The Unix socket path, or null.</summary>
    public string? UnixSocket { get; }
    /// <summary>True when clients may write (one client at a time).</summary>
    public bool Writable { get; }
    /// <summary>Clients connected now.</summary>
    public int ClientCount => Running ? Server.ClientCount : 0;
    /// <summary>When the export started.</summary>
    public DateTime StartTime { get; }
    /// <summary>False once stopped.</summary>
    public bool Running { get; internal set; } = true;
}
