// Big-endian framing helpers for NBD messages (proto.md "Protocol phases": all numbers in network byte order).
using System.Buffers.Binary;
using System.Text;

namespace VDisk.Engine.Nbd;

/// <summary>Reads and builds the fixed parts of NBD messages.</summary>
internal static class NbdWire
{
    /// <summary>Fills <paramref name="buffer"/>; false on a clean end of stream before the first byte, EndOfStreamException after it.</summary>
    public static async ValueTask<bool> ReadMessageAsync(Stream stream, Memory<byte> buffer, CancellationToken cancel)
    {
        int got = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancel).ConfigureAwait(false);
        if (got == 0) return false;
        if (got < buffer.Length) throw new EndOfStreamException("The NBD client closed the connection in the middle of a message.");
        return true;
    }

    /// <summary>An option reply (proto.md "Option reply"): magic, option, reply type, length, data.</summary>
    public static byte[] OptionReply(uint option, uint type, ReadOnlySpan<byte> data)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply.AsSpan(20));
        return reply;
    }

    /// <summary>A simple reply header (proto.md "Simple reply message").</summary>
    public static void SimpleReply(Span<byte> header, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
    }

    /// <summary>A structured reply chunk header (proto.md "Structured reply chunk message").</summary>
    public static void ChunkHeader(Span<byte> header, ushort flags, ushort type, ulong cookie, int length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)length);
    }

    /// <summary>An NBD_REPLY_TYPE_ERROR chunk (with NBD_REPLY_FLAG_DONE): error, message length, message.</summary>
    public static byte[] ErrorChunk(ulong cookie, uint error, string message)
    {
        byte[] text = Encoding.UTF8.GetBytes(message.Length > 200 ? message[..200] : message);
        var chunk = new byte[NbdProtocol.StructuredHeaderSize + 6 + text.Length];
        ChunkHeader(chunk, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, cookie, 6 + text.Length);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(20), error);
        BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(24), (ushort)text.Length);
        text.CopyTo(chunk.AsSpan(26));
        return chunk;
    }

    /// <summary>Decodes a client-sent string, refusing invalid UTF-8 (proto.md: "strings are UTF-8").</summary>
    public static bool TryDecode(ReadOnlySpan<byte> bytes, out string text)
    {
        try
        {
            text = new UTF8Encoding(false, true).GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            text = "";
            return false;
        }
    }
}
