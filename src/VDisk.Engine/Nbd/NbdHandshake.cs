// The option haggling phase of the fixed newstyle handshake (proto.md "Fixed newstyle negotiation", "Option
// types": NBD_OPT_EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT, SET_META_CONTEXT;
// "Option reply types"; "Request types"/"Information types": NBD_INFO_EXPORT, NAME, DESCRIPTION, BLOCK_SIZE).
// Oldstyle and plain (non-fixed) newstyle clients are refused by closing the connection.
using System.Buffers.Binary;
using System.Text;

namespace VDisk.Engine.Nbd;

/// <summary>Negotiates one connection up to the transmission phase.</summary>
internal sealed class NbdHandshake
{
    private readonly Stream _stream;
    private readonly Func<string, NbdExport?> _lookup;
    private readonly IReadOnlyList<NbdExport> _exports;
    private bool _noZeroes;

    public NbdHandshake(Stream stream, IReadOnlyList<NbdExport> exports, Func<string, NbdExport?> lookup)
    {
        _stream = stream;
        _exports = exports;
        _lookup = lookup;
    }

    /// <summary>True once NBD_OPT_STRUCTURED_REPLY was acknowledged.</summary>
    public bool StructuredReplies { get; private set; }
    /// <summary>True when base:allocation was selected by NBD_OPT_SET_META_CONTEXT.</summary>
    public bool BaseAllocation { get; private set; }

    /// <summary>
    /// Runs the handshake; returns the export the client chose, already attached (a client slot taken), or null
    /// when the connection is to be closed (abort, bad client, unknown export with NBD_OPT_EXPORT_NAME).
    /// </summary>
    public async Task<NbdExport?> RunAsync(CancellationToken cancel)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdProtocol.InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes);
        await _stream.WriteAsync(greeting, cancel).ConfigureAwait(false);

        var clientFlags = new byte[4];
        if (!await NbdWire.ReadMessageAsync(_stream, clientFlags, cancel).ConfigureAwait(false)) return null;
        uint flags = BinaryPrimitives.ReadUInt32BigEndian(clientFlags);
        const uint known = NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes;
        if ((flags & NbdProtocol.ClientFlagFixedNewstyle) == 0 || (flags & ~known) != 0) return null; // proto.md: close on unknown flags
        _noZeroes = (flags & NbdProtocol.ClientFlagNoZeroes) != 0;

        var header = new byte[16];
        while (true)
        {
            if (!await NbdWire.ReadMessageAsync(_stream, header, cancel).ConfigureAwait(false)) return null;
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdProtocol.OptionMagic) return null;
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (length > NbdProtocol.MaxOptionLength) return null; // an oversize option: hang up rather than read it
            var data = new byte[length];
            if (length > 0) await _stream.ReadExactlyAsync(data, cancel).ConfigureAwait(false);

            switch (option)
            {
                case NbdProtocol.OptExportName:
                    return await ExportNameAsync(data, cancel).ConfigureAwait(false);
                case NbdProtocol.OptAbort:
                    try { await ReplyAsync(option, NbdProtocol.RepAck, default, cancel).ConfigureAwait(false); }
                    catch (IOException) { } // the client may close without reading the acknowledgement
                    return null;
                case NbdProtocol.OptList:
                    await ListAsync(data, cancel).ConfigureAwait(false);
                    break;
                case NbdProtocol.OptInfo:
                case NbdProtocol.OptGo:
                    var chosen = await InfoOrGoAsync(option, data, cancel).ConfigureAwait(false);
                    if (chosen != null) return chosen;
                    break;
                case NbdProtocol.OptStructuredReply:
                    if (length != 0)
                        await ErrorAsync(option, NbdProtocol.RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data.", cancel).ConfigureAwait(false);
                    else
                    {
                        StructuredReplies = true;
                        await ReplyAsync(option, NbdProtocol.RepAck, default, cancel).ConfigureAwait(false);
                    }
                    break;
                case NbdProtocol.OptListMetaContext:
                case NbdProtocol.OptSetMetaContext:
                    await MetaContextAsync(option, data, cancel).ConfigureAwait(false);
                    break;
                case NbdProtocol.OptStartTls:
                    await ErrorAsync(option, NbdProtocol.RepErrPolicy, "This server does not offer TLS.", cancel).ConfigureAwait(false);
                    break;
                default:
                    await ErrorAsync(option, NbdProtocol.RepErrUnsup, $"Option {option} is not supported.", cancel).ConfigureAwait(false);
                    break;
            }
        }
    }

    // NBD_OPT_EXPORT_NAME: no error reply exists; an unknown or busy export closes the connection.
    private async Task<NbdExport?> ExportNameAsync(byte[] data, CancellationToken cancel)
    {
        if (!NbdWire.TryDecode(data, out string name) || _lookup(name) is not { } export || !export.TryAttach()) return null;
        try
        {
            var reply = new byte[_noZeroes ? 10 : 134];
            BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Disk.Length);
            BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), export.TransmissionFlags);
            await _stream.WriteAsync(reply, cancel).ConfigureAwait(false);
            return export;
        }
        catch
        {
            export.Detach();
            throw;
        }
    }

    private async Task ListAsync(byte[] data, CancellationToken cancel)
    {
        if (data.Length != 0)
        {
            await ErrorAsync(NbdProtocol.OptList, NbdProtocol.RepErrInvalid, "NBD_OPT_LIST takes no data.", cancel).ConfigureAwait(false);
            return;
        }
        foreach (var export in _exports)
        {
            byte[] name = Encoding.UTF8.GetBytes(export.Name);
            var item = new byte[4 + name.Length];
            BinaryPrimitives.WriteUInt32BigEndian(item, (uint)name.Length);
            name.CopyTo(item, 4);
            await ReplyAsync(NbdProtocol.OptList, NbdProtocol.RepServer, item, cancel).ConfigureAwait(false);
        }
        await ReplyAsync(NbdProtocol.OptList, NbdProtocol.RepAck, default, cancel).ConfigureAwait(false);
    }

    // NBD_OPT_INFO / NBD_OPT_GO: name length, name, count of info requests, the requests (16 bits each).
    private async Task<NbdExport?> InfoOrGoAsync(uint option, byte[] data, CancellationToken cancel)
    {
        if (data.Length < 6 || BinaryPrimitives.ReadUInt32BigEndian(data) is var nameLength && nameLength > (uint)(data.Length - 6))
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "The option data is too short for its export name.", cancel).ConfigureAwait(false);
            return null;
        }
        int n = (int)nameLength;
        int requests = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + n));
        if (data.Length != 6 + n + 2 * requests || !NbdWire.TryDecode(data.AsSpan(4, n), out string name))
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "The option data does not match its counts, or the name is not UTF-8.", cancel).ConfigureAwait(false);
            return null;
        }
        if (_lookup(name) is not { } export)
        {
            await ErrorAsync(option, NbdProtocol.RepErrUnknown, $"No export is named '{name}'.", cancel).ConfigureAwait(false);
            return null;
        }
        bool wantName = false, wantDescription = false;
        for (int i = 0; i < requests; i++)
        {
            ushort info = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(6 + n + 2 * i));
            wantName |= info == NbdProtocol.InfoName;
            wantDescription |= info == NbdProtocol.InfoDescription;
        }
        bool go = option == NbdProtocol.OptGo;
        if (go && !export.TryAttach())
        {
            await ErrorAsync(option, NbdProtocol.RepErrPolicy, $"Export '{name}' is writable and already has its one client.", cancel).ConfigureAwait(false);
            return null;
        }
        try
        {
            var info = new byte[12];
            BinaryPrimitives.WriteUInt16BigEndian(info, NbdProtocol.InfoExport);
            BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Disk.Length);
            BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), export.TransmissionFlags);
            await ReplyAsync(option, NbdProtocol.RepInfo, info, cancel).ConfigureAwait(false);

            var sizes = new byte[14];
            BinaryPrimitives.WriteUInt16BigEndian(sizes, NbdProtocol.InfoBlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1);                       // minimum: any byte range
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), 4096);                    // preferred
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), NbdProtocol.MaxPayload); // maximum payload
            await ReplyAsync(option, NbdProtocol.RepInfo, sizes, cancel).ConfigureAwait(false);

            if (wantName) await ReplyAsync(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoName, export.Name), cancel).ConfigureAwait(false);
            if (wantDescription && export.Description != null)
                await ReplyAsync(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoDescription, export.Description), cancel).ConfigureAwait(false);
            await ReplyAsync(option, NbdProtocol.RepAck, default, cancel).ConfigureAwait(false);
            return go ? export : null;
        }
        catch
        {
            if (go) export.Detach();
            throw;
        }
    }

    private static byte[] InfoString(ushort type, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var info = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(info, type);
        bytes.CopyTo(info, 2);
        return info;
    }

    // NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: export name length, name, query count, (length, query)...
    // Only base:allocation exists here; "base:" lists it too; an empty LIST query list lists everything.
    private async Task MetaContextAsync(uint option, byte[] data, CancellationToken cancel)
    {
        bool set = option == NbdProtocol.OptSetMetaContext;
        if (!StructuredReplies)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "Metadata contexts need structured replies first.", cancel).ConfigureAwait(false);
            return;
        }
        var queries = ParseQueries(data, out string? exportName);
        if (queries == null || exportName == null)
        {
            await ErrorAsync(option, NbdProtocol.RepErrInvalid, "The option data does not match its lengths.", cancel).ConfigureAwait(false);
            return;
        }
        if (_lookup(exportName) == null)
        {
            await ErrorAsync(option, NbdProtocol.RepErrUnknown, $"No export is named '{exportName}'.", cancel).ConfigureAwait(false);
            return;
        }
        bool match = queries.Count == 0 ? !set : queries.Exists(q => q == NbdProtocol.BaseAllocation || (!set && q == "base:"));
        if (set) BaseAllocation = match;
        if (match)
        {
            byte[] name = Encoding.UTF8.GetBytes(NbdProtocol.BaseAllocation);
            var context = new byte[4 + name.Length];
            BinaryPrimitives.WriteUInt32BigEndian(context, set ? NbdProtocol.BaseAllocationId : 0);
            name.CopyTo(context, 4);
            await ReplyAsync(option, NbdProtocol.RepMetaContext, context, cancel).ConfigureAwait(false);
        }
        await ReplyAsync(option, NbdProtocol.RepAck, default, cancel).ConfigureAwait(false);
    }

    private static List<string>? ParseQueries(byte[] data, out string? exportName)
    {
        exportName = null;
        var span = data.AsSpan();
        if (span.Length < 8) return null;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > (uint)(span.Length - 8) || !NbdWire.TryDecode(span.Slice(4, (int)nameLength), out string name)) return null;
        span = span[(4 + (int)nameLength)..];
        uint count = BinaryPrimitives.ReadUInt32BigEndian(span);
        span = span[4..];
        if (count > (uint)span.Length / 4) return null;
        var queries = new List<string>((int)count);
        for (uint i = 0; i < count; i++)
        {
            if (span.Length < 4) return null;
            uint length = BinaryPrimitives.ReadUInt32BigEndian(span);
            if (length > (uint)(span.Length - 4) || !NbdWire.TryDecode(span.Slice(4, (int)length), out string query)) return null;
            queries.Add(query);
            span = span[(4 + (int)length)..];
        }
        if (!span.IsEmpty) return null;
        exportName = name;
        return queries;
    }

    private Task ErrorAsync(uint option, uint error, string message, CancellationToken cancel) =>
        ReplyAsync(option, error, Encoding.UTF8.GetBytes(message), cancel);

    private async Task ReplyAsync(uint option, uint type, ReadOnlyMemory<byte> data, CancellationToken cancel) =>
        await _stream.WriteAsync(NbdWire.OptionReply(option, type, data.Span), cancel).ConfigureAwait(false);
}
