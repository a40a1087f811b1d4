// A minimal NBD client on a raw socket for tests that must see the wire (proto.md "Fixed newstyle negotiation",
// NBD_OPT_STRUCTURED_REPLY, NBD_OPT_GO, "Request message", "Simple reply message", "Structured reply chunk message"):
// which chunk types a READ is answered with, not only the bytes a library client hands back.
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using VDisk.Engine.Nbd;

namespace VDisk.Engine.Tests.Nbd;

/// <summary>One negotiated connection, reading with simple or structured replies.</summary>
public sealed class NbdRawClient : IDisposable
{
    private readonly Socket _socket;

    /// <summary>One structured reply chunk of a READ: type, flags, offset, length (hole or data) and the data.</summary>
    public sealed record Chunk(ushort Type, ushort Flags, long Offset, int Length, byte[] Data);

    private NbdRawClient(Socket socket) => _socket = socket;

    /// <summary>Connects to 127.0.0.1:<paramref name="port"/> and selects <paramref name="name"/> with NBD_OPT_GO (after NBD_OPT_STRUCTURED_REPLY when asked).</summary>
    public static NbdRawClient Connect(int port, string name, bool structured)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 15000, SendTimeout = 15000 };
        socket.Connect(IPAddress.Loopback, port);
        var client = new NbdRawClient(socket);
        client.Receive(18); // NBDMAGIC, IHAVEOPT, handshake flags
        var bytes = new List<byte>();
        void U32(uint v) { for (int s = 24; s >= 0; s -= 8) bytes.Add((byte)(v >> s)); }
        void U64(ulong v) { U32((uint)(v >> 32)); U32((uint)v); }
        void Option(uint option, byte[] data) { U64(NbdProtocol.OptionMagic); U32(option); U32((uint)data.Length); bytes.AddRange(data); }
        U32(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes);
        if (structured) Option(NbdProtocol.OptStructuredReply, Array.Empty<byte>());
        byte[] n = Encoding.UTF8.GetBytes(name);
        var go = new byte[4 + n.Length + 2];
        BinaryPrimitives.WriteUInt32BigEndian(go, (uint)n.Length);
        n.CopyTo(go, 4);
        Option(NbdProtocol.OptGo, go);
        socket.Send(bytes.ToArray());
        int acks = 0;
        while (acks < (structured ? 2 : 1))
        {
            byte[] header = client.Receive(20);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            client.Receive((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
            if (type >= 0x80000000) throw new InvalidOperationException($"option error 0x{type:x}");
            if (type == NbdProtocol.RepAck) acks++;
        }
        return client;
    }

    /// <summary>A READ answered with structured reply chunks, up to the one with NBD_REPLY_FLAG_DONE.</summary>
    public List<Chunk> Read(ulong cookie, ushort flags, long offset, int length)
    {
        SendRead(cookie, flags, offset, length);
        var chunks = new List<Chunk>();
        while (true)
        {
            byte[] h = Receive(NbdProtocol.StructuredHeaderSize);
            if (BinaryPrimitives.ReadUInt32BigEndian(h) != NbdProtocol.StructuredReplyMagic) throw new InvalidOperationException("not a structured reply");
            ushort chunkFlags = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4));
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6));
            if (BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)) != cookie) throw new InvalidOperationException("wrong cookie");
            byte[] payload = Receive((int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)));
            long at = payload.Length >= 8 ? (long)BinaryPrimitives.ReadUInt64BigEndian(payload) : 0;
            chunks.Add(type switch
            {
                NbdProtocol.ReplyTypeOffsetData => new Chunk(type, chunkFlags, at, payload.Length - 8, payload[8..]),
                NbdProtocol.ReplyTypeOffsetHole => new Chunk(type, chunkFlags, at, (int)BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8)), Array.Empty<byte>()),
                NbdProtocol.ReplyTypeError => throw new InvalidOperationException(
                    $"error chunk {BinaryPrimitives.ReadUInt32BigEndian(payload)}: {Encoding.UTF8.GetString(payload.AsSpan(6))}"),
                _ => new Chunk(type, chunkFlags, 0, 0, payload),
            });
            if ((chunkFlags & NbdProtocol.ReplyFlagDone) != 0) return chunks;
        }
    }

    /// <summary>A READ answered with a simple reply (a connection without structured replies): the bytes.</summary>
    public byte[] SimpleRead(ulong cookie, long offset, int length)
    {
        SendRead(cookie, 0, offset, length);
        byte[] reply = Receive(NbdProtocol.SimpleReplySize);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != NbdProtocol.SimpleReplyMagic) throw new InvalidOperationException("not a simple reply");
        if (BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)) != 0) throw new InvalidOperationException("read error");
        return Receive(length);
    }

    private void SendRead(ulong cookie, ushort flags, long offset, int length)
    {
        var request = new byte[NbdProtocol.RequestSize];
        BinaryPrimitives.WriteUInt32BigEndian(request, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), NbdProtocol.CmdRead);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
        _socket.Send(request);
    }

    private byte[] Receive(int length)
    {
        var buffer = new byte[length];
        for (int got = 0; got < length;)
        {
            int n = _socket.Receive(buffer, got, length - got, SocketFlags.None);
            if (n == 0) throw new SocketException((int)SocketError.ConnectionReset);
            got += n;
        }
        return buffer;
    }

    /// <summary>Closes the connection.</summary>
    public void Dispose() => _socket.Dispose();
}
