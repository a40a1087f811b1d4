// The transmission phase of one connection (proto.md "Transmission", "Request message", "Simple reply message",
// "Structured reply chunk message", "Request types": READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS;
// "Error values"; "base:allocation metadata context"). Reads of a read-only export run concurrently (several in
// flight per connection); everything on a writable export runs in order. A request is checked completely (magic,
// type, range, payload size, permission) before the disk is touched; a write whose payload does not arrive in
// full writes nothing. READ replies use OFFSET_HOLE chunks for known-zero ranges once structured replies are on
// ("Structured reply types": NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE; NBD_CMD_FLAG_DF honoured).
using System.Buffers;
using System.Buffers.Binary;
using VDisk.Engine.Core;

namespace VDisk.Engine.Nbd;

/// <summary>Serves requests on one negotiated connection until the client disconnects or the server stops.</summary>
internal sealed class NbdTransmission
{
    private const int MaxInFlight = 16;
    private const int MaxDescriptors = 8192;
    private readonly Stream _stream;
    private readonly NbdExport _export;
    private readonly bool _structured;
    private readonly bool _baseAllocation;
    private readonly SemaphoreSlim _send = new(1, 1);
    private readonly SemaphoreSlim _slots = new(MaxInFlight, MaxInFlight);
    private readonly List<Task> _pending = new();

    public NbdTransmission(Stream stream, NbdExport export, bool structured, bool baseAllocation)
    {
        _stream = stream;
        _export = export;
        _structured = structured;
        _baseAllocation = baseAllocation;
    }

    private VirtualDisk Disk => _export.Disk;

    /// <summary>Serves until NBD_CMD_DISC, end of stream, a protocol violation (the connection is then closed) or cancellation.</summary>
    public async Task RunAsync(CancellationToken cancel)
    {
        var header = new byte[NbdProtocol.RequestSize];
        try
        {
            while (true)
            {
                if (!await NbdWire.ReadMessageAsync(_stream, header, cancel).ConfigureAwait(false)) return;
                if (BinaryPrimitives.ReadUInt32BigEndian(header) != NbdProtocol.RequestMagic) return; // proto.md: bad magic ends the connection
                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
                ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
                ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24));
                bool inRange = length > 0 && offset <= (ulong)Disk.Length && length <= (ulong)Disk.Length - offset;

                switch (type)
                {
                    case NbdProtocol.CmdRead:
                        if (length > NbdProtocol.MaxPayload)
                            await ErrorAsync(cookie, true, NbdProtocol.EOVERFLOW, "The read is larger than the 32 MiB maximum.", cancel).ConfigureAwait(false);
                        else if (!inRange)
                            await ErrorAsync(cookie, true, NbdProtocol.EINVAL, "The read is empty or goes past the end of the export.", cancel).ConfigureAwait(false);
                        else
                            await DispatchAsync(() => ReadAsync(cookie, flags, (long)offset, (int)length, cancel), cancel).ConfigureAwait(false);
                        break;
                    case NbdProtocol.CmdWrite:
                        if (length > NbdProtocol.MaxPayload) return; // the payload cannot be skipped safely: hang up
                        await WriteAsync(cookie, flags, offset, (int)length, inRange, cancel).ConfigureAwait(false);
                        break;
                    case NbdProtocol.CmdDisc:
                        await DrainAsync().ConfigureAwait(false);
                        return;
                    case NbdProtocol.CmdFlush:
                        await DrainAsync().ConfigureAwait(false);
                        await DoAsync(cookie, () => Disk.Flush(), cancel).ConfigureAwait(false);
                        break;
                    case NbdProtocol.CmdTrim:
                    case NbdProtocol.CmdWriteZeroes:
                        await ZeroAsync(cookie, type, flags, (long)offset, length, inRange, cancel).ConfigureAwait(false);
                        break;
                    case NbdProtocol.CmdBlockStatus:
                        if (!_baseAllocation)
                            await ErrorAsync(cookie, true, NbdProtocol.EINVAL, "No metadata context was negotiated.", cancel).ConfigureAwait(false);
                        else if (!inRange)
                            await ErrorAsync(cookie, true, NbdProtocol.EINVAL, "The range is empty or goes past the end of the export.", cancel).ConfigureAwait(false);
                        else
                            await DispatchAsync(() => BlockStatusAsync(cookie, flags, (long)offset, length, cancel), cancel).ConfigureAwait(false);
                        break;
                    default:
                        await ErrorAsync(cookie, false, NbdProtocol.EINVAL, $"Command {type} is not supported.", cancel).ConfigureAwait(false);
                        break;
                }
            }
        }
        finally
        {
            await DrainAsync().ConfigureAwait(false);
        }
    }

    // Read-only work runs beside the next requests on a read-only export; on a writable one it runs in order.
    private async Task DispatchAsync(Func<Task> work, CancellationToken cancel)
    {
        if (_export.Writable)
        {
            await work().ConfigureAwait(false);
            return;
        }
        await _slots.WaitAsync(cancel).ConfigureAwait(false);
        var task = Task.Run(async () =>
        {
            try { await work().ConfigureAwait(false); }
            finally { _slots.Release(); }
        }, CancellationToken.None);
        lock (_pending)
        {
            _pending.RemoveAll(t => t.IsCompleted);
            _pending.Add(task);
        }
        if (task.IsFaulted) await task.ConfigureAwait(false);
    }

    // Waits for every request in flight (their failures were a broken connection; the caller ends anyway).
    private async Task DrainAsync()
    {
        Task[] tasks;
        lock (_pending)
        {
            tasks = _pending.ToArray();
            _pending.Clear();
        }
        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException) { }
    }

    // A read: with structured replies, the ranges the image knows read as zeroes (zero clusters, holes of the whole
    // chain) go as NBD_REPLY_TYPE_OFFSET_HOLE chunks and the rest as NBD_REPLY_TYPE_OFFSET_DATA (NbdReadPlan); all
    // chunks of one reply are sent together, the last with NBD_REPLY_FLAG_DONE. Without structured replies, a simple
    // reply with every byte.
    private async Task ReadAsync(ulong cookie, ushort flags, long offset, int length, CancellationToken cancel)
    {
        IReadOnlyList<NbdReadPlan.Run> runs;
        try
        {
            runs = _structured
                ? NbdReadPlan.Plan(Disk, offset, length, (flags & NbdProtocol.CmdFlagDf) != 0)
                : new[] { new NbdReadPlan.Run(offset, length, false) };
        }
        catch (Exception e) when (e is VDiskException or IOException or ObjectDisposedException)
        {
            await ErrorAsync(cookie, true, NbdProtocol.EIO, e.Message, cancel).ConfigureAwait(false);
            return;
        }
        int size = _structured ? NbdReadPlan.ReplySize(runs) : NbdProtocol.SimpleReplySize + length;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            int at = 0;
            for (int i = 0; i < runs.Count; i++)
            {
                var run = runs[i];
                ushort done = i == runs.Count - 1 ? NbdProtocol.ReplyFlagDone : (ushort)0;
                if (!_structured)
                {
                    NbdWire.SimpleReply(buffer, 0, cookie);
                    at = NbdProtocol.SimpleReplySize;
                }
                else if (run.Hole)
                {
                    NbdWire.ChunkHeader(buffer.AsSpan(at), done, NbdProtocol.ReplyTypeOffsetHole, cookie, 12);
                    BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(at + NbdProtocol.StructuredHeaderSize), (ulong)run.Offset);
                    BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at + NbdProtocol.StructuredHeaderSize + 8), (uint)run.Length);
                    at += NbdProtocol.StructuredHeaderSize + 12;
                    continue;
                }
                else
                {
                    NbdWire.ChunkHeader(buffer.AsSpan(at), done, NbdProtocol.ReplyTypeOffsetData, cookie, 8 + run.Length);
                    BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(at + NbdProtocol.StructuredHeaderSize), (ulong)run.Offset);
                    at += NbdProtocol.StructuredHeaderSize + 8;
                }
                try
                {
                    Disk.Read(run.Offset, buffer.AsSpan(at, run.Length));
                }
                catch (Exception e) when (e is VDiskException or IOException or ObjectDisposedException)
                {
                    // Nothing of this reply has been sent yet: one error chunk (or simple error reply) answers it.
                    await ErrorAsync(cookie, true, NbdProtocol.EIO, e.Message, cancel).ConfigureAwait(false);
                    return;
                }
                at += run.Length;
            }
            await SendAsync(buffer.AsMemory(0, at), cancel).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task WriteAsync(ulong cookie, ushort flags, ulong offset, int length, bool inRange, CancellationToken cancel)
    {
        byte[] payload = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        try
        {
            await _stream.ReadExactlyAsync(payload.AsMemory(0, length), cancel).ConfigureAwait(false); // EOF here: nothing written
            if (!_export.Writable)
                await ErrorAsync(cookie, false, NbdProtocol.EPERM, "The export is read-only.", cancel).ConfigureAwait(false);
            else if (!inRange)
                await ErrorAsync(cookie, false, NbdProtocol.EINVAL, "The write is empty or goes past the end of the export.", cancel).ConfigureAwait(false);
            else
                await DoAsync(cookie, () =>
                {
                    Disk.Write((long)offset, payload.AsSpan(0, length));
                    if ((flags & NbdProtocol.CmdFlagFua) != 0) Disk.Flush();
                }, cancel).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }

    private async Task ZeroAsync(ulong cookie, ushort type, ushort flags, long offset, uint length, bool inRange, CancellationToken cancel)
    {
        if (!_export.Writable)
            await ErrorAsync(cookie, false, NbdProtocol.EPERM, "The export is read-only.", cancel).ConfigureAwait(false);
        else if (!inRange)
            await ErrorAsync(cookie, false, NbdProtocol.EINVAL, "The range is empty or goes past the end of the export.", cancel).ConfigureAwait(false);
        else if ((flags & NbdProtocol.CmdFlagFastZero) != 0)
            await ErrorAsync(cookie, false, NbdProtocol.EINVAL, "Fast zeroing was not offered.", cancel).ConfigureAwait(false);
        else
        {
            // TRIM may release space (the content then reads as zeroes here, never the backing image's); WRITE_ZEROES
            // releases it too unless NBD_CMD_FLAG_NO_HOLE asks to keep it allocated.
            bool unmap = type == NbdProtocol.CmdTrim || (flags & NbdProtocol.CmdFlagNoHole) == 0;
            await DoAsync(cookie, () =>
            {
                Disk.WriteZeroes(offset, length, unmap);
                if ((flags & NbdProtocol.CmdFlagFua) != 0) Disk.Flush();
            }, cancel).ConfigureAwait(false);
        }
    }

    // base:allocation: data is 0, a zero range or a hole in the whole chain is NBD_STATE_HOLE | NBD_STATE_ZERO.
    private async Task BlockStatusAsync(ulong cookie, ushort flags, long offset, uint length, CancellationToken cancel)
    {
        var descriptors = new List<(uint Length, uint Flags)>();
        try
        {
            long pos = offset, end = offset + length;
            bool one = (flags & NbdProtocol.CmdFlagReqOne) != 0;
            while (pos < end && descriptors.Count < MaxDescriptors)
            {
                var status = Disk.GetBlockStatus(pos, end - pos);
                if (status.Length <= 0) break;
                uint state = status.Kind == ExtentKind.Data ? 0 : NbdProtocol.StateHole | NbdProtocol.StateZero;
                uint run = (uint)Math.Min(status.Length, end - pos);
                if (descriptors.Count > 0 && descriptors[^1].Flags == state)
                    descriptors[^1] = (descriptors[^1].Length + run, state);
                else if (one && descriptors.Count == 1)
                    break;
                else
                    descriptors.Add((run, state));
                pos += run;
            }
        }
        catch (Exception e) when (e is VDiskException or IOException or ObjectDisposedException)
        {
            await ErrorAsync(cookie, true, NbdProtocol.EIO, e.Message, cancel).ConfigureAwait(false);
            return;
        }
        int payload = 4 + 8 * descriptors.Count;
        var reply = new byte[NbdProtocol.StructuredHeaderSize + payload];
        NbdWire.ChunkHeader(reply, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeBlockStatus, cookie, payload);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(20), NbdProtocol.BaseAllocationId);
        for (int i = 0; i < descriptors.Count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(24 + 8 * i), descriptors[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(28 + 8 * i), descriptors[i].Flags);
        }
        await SendAsync(reply, cancel).ConfigureAwait(false);
    }

    // Runs disk work for a command answered with a simple reply: 0, or EIO (ENOSPC, EPERM) when the engine fails.
    private async Task DoAsync(ulong cookie, Action work, CancellationToken cancel)
    {
        uint error = 0;
        string message = "";
        try
        {
            work();
        }
        catch (VDiskException e)
        {
            error = e.Kind == VDiskErrorKind.ReadOnly ? NbdProtocol.EPERM : NbdProtocol.EIO;
            message = e.Message;
        }
        catch (IOException e)
        {
            error = e.HResult == 28 || e.Message.Contains("space", StringComparison.OrdinalIgnoreCase) ? NbdProtocol.ENOSPC : NbdProtocol.EIO;
            message = e.Message;
        }
        if (error != 0) await ErrorAsync(cookie, false, error, message, cancel).ConfigureAwait(false);
        else await SimpleAsync(cookie, 0, cancel).ConfigureAwait(false);
    }

    // An error reply: a structured error chunk for READ and BLOCK_STATUS once structured replies are on (proto.md:
    // those commands must not get simple replies then), a simple reply otherwise.
    private Task ErrorAsync(ulong cookie, bool structuredCommand, uint error, string message, CancellationToken cancel) =>
        _structured && structuredCommand
            ? SendAsync(NbdWire.ErrorChunk(cookie, error, message), cancel)
            : SimpleAsync(cookie, error, cancel);

    private Task SimpleAsync(ulong cookie, uint error, CancellationToken cancel)
    {
        var reply = new byte[NbdProtocol.SimpleReplySize];
        NbdWire.SimpleReply(reply, error, cookie);
        return SendAsync(reply, cancel);
    }

    private async Task SendAsync(ReadOnlyMemory<byte> message, CancellationToken cancel)
    {
        await _send.WaitAsync(cancel).ConfigureAwait(false);
        try { await _stream.WriteAsync(message, cancel).ConfigureAwait(false); }
        finally { _send.Release(); }
    }
}
