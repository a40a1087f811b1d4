// Bad clients against the NBD server (issue 12 "Robust against bad clients"): random bytes, truncated and mutated
// handshakes and requests from raw sockets, oversize requests, offsets past the end, writes to a read-only export and
// clients that vanish mid-payload. The server must keep running, never change the image (SHA-256 before and after) and
// keep serving correct data to a well-behaved client meanwhile. Iterations: VDISK_NBD_FUZZ_ITERATIONS (default 300).
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using VDisk.Engine.Chain;
using VDisk.Engine.Nbd;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Nbd;

public class NbdFuzzTests
{
    private static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("VDISK_NBD_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : 300;

    [SkippableFact]
    public void BadClientsNeverCrashTheServerNorChangeTheImage()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("f.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", image, "4M");
        Qemu.Io("-f", "qcow2", "-c", "write -P 0x3c 0 1M", "-c", "write -P 0x5d 2M 64k", image);
        string before = NbdTools.FileSha(image);
        byte[] expected = new byte[4 << 20];
        using (var d = ImageChain.Open(image)) d.Read(0, expected);

        var server = new NbdServer(new[] { new NbdExport("x", ImageChain.Open(image)) });
        using (server)
        {
            int port = server.ListenTcp(IPAddress.Loopback, 0).Port;
            var random = new Random(12);
            for (int i = 0; i < Iterations; i++)
            {
                BadClient(port, random, i);
                if (i % 25 == 0) AssertGoodClientReads(port, expected, random);
            }
            AssertGoodClientReads(port, expected, random);
            Assert.True(SpinWait.SpinUntil(() => server.ConnectionCount == 0, 5000), "connections of bad clients were left open");
        }
        Assert.Equal(before, NbdTools.FileSha(image));
    }

    // One misbehaving client: a valid or broken handshake, then random or mutated requests, then vanishing.
    private static void BadClient(int port, Random random, int round)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(IPAddress.Loopback, port);
        socket.ReceiveTimeout = 2000;
        socket.SendTimeout = 2000;
        try
        {
            Receive(socket, 18);
            int kind = round % 5;
            if (kind == 0)
            {
                socket.Send(RandomBytes(random, random.Next(0, 300))); // garbage from the start
                return;
            }
            var handshake = Handshake("x", structured: random.Next(2) == 0);
            if (kind == 1)
            {
                int cut = random.Next(handshake.Length);
                Mutate(handshake, random, 1 + random.Next(3), from: 0, limit: cut);
                socket.Send(handshake.AsSpan(0, cut));
                return;
            }
            socket.Send(handshake);
            DrainFor(socket, 50);
            int requests = random.Next(1, 20);
            for (int r = 0; r < requests; r++)
            {
                byte[] request = RandomRequest(random, kind == 4);
                socket.Send(request.AsSpan(0, kind == 3 && r == requests - 1 ? random.Next(request.Length) : request.Length));
            }
            DrainFor(socket, 20);
        }
        catch (SocketException)
        {
            // the server hung up on us: allowed
        }
    }

    // A request that is valid, out of range, oversize, a write with a short or full payload, or mutated bytes.
    private static byte[] RandomRequest(Random random, bool mutate)
    {
        ushort[] types = { NbdProtocol.CmdRead, NbdProtocol.CmdWrite, NbdProtocol.CmdFlush, NbdProtocol.CmdTrim,
            NbdProtocol.CmdWriteZeroes, NbdProtocol.CmdBlockStatus, NbdProtocol.CmdCache, 9, 0xffff };
        ushort type = types[random.Next(types.Length)];
        long offset = random.Next(4) switch { 0 => random.NextInt64(4 << 20), 1 => (4 << 20) - random.Next(1, 4096), 2 => long.MaxValue - random.Next(100), _ => random.NextInt64() };
        uint length = random.Next(4) switch { 0 => (uint)random.Next(1, 65536), 1 => (uint)random.Next(0, 8), 2 => (uint)NbdProtocol.MaxPayload + 1, _ => (uint)random.NextInt64(uint.MaxValue) };
        int payload = type == NbdProtocol.CmdWrite && length <= 65536 ? (int)length - random.Next(2) * random.Next((int)length + 1) : 0;
        var request = new byte[NbdProtocol.RequestSize + payload];
        BinaryPrimitives.WriteUInt32BigEndian(request, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), (ushort)random.Next(32));
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), (ulong)random.NextInt64());
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
        random.NextBytes(request.AsSpan(NbdProtocol.RequestSize));
        if (mutate) Mutate(request, random, 1 + random.Next(4), 0, request.Length);
        return request;
    }

    // Client flags, optionally NBD_OPT_STRUCTURED_REPLY and SET_META_CONTEXT base:allocation, then NBD_OPT_GO.
    private static byte[] Handshake(string name, bool structured)
    {
        var bytes = new List<byte>();
        void U32(uint v) { for (int s = 24; s >= 0; s -= 8) bytes.Add((byte)(v >> s)); }
        void U64(ulong v) { U32((uint)(v >> 32)); U32((uint)v); }
        void Option(uint option, byte[] data) { U64(NbdProtocol.OptionMagic); U32(option); U32((uint)data.Length); bytes.AddRange(data); }
        byte[] n = System.Text.Encoding.UTF8.GetBytes(name);
        U32(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes);
        if (structured)
        {
            Option(NbdProtocol.OptStructuredReply, Array.Empty<byte>());
            byte[] q = System.Text.Encoding.UTF8.GetBytes(NbdProtocol.BaseAllocation);
            var meta = new byte[4 + n.Length + 4 + 4 + q.Length];
            BinaryPrimitives.WriteUInt32BigEndian(meta, (uint)n.Length);
            n.CopyTo(meta, 4);
            BinaryPrimitives.WriteUInt32BigEndian(meta.AsSpan(4 + n.Length), 1);
            BinaryPrimitives.WriteUInt32BigEndian(meta.AsSpan(8 + n.Length), (uint)q.Length);
            q.CopyTo(meta, 12 + n.Length);
            Option(NbdProtocol.OptSetMetaContext, meta);
        }
        var go = new byte[4 + n.Length + 2];
        BinaryPrimitives.WriteUInt32BigEndian(go, (uint)n.Length);
        n.CopyTo(go, 4);
        Option(NbdProtocol.OptGo, go);
        return bytes.ToArray();
    }

    // A well-behaved client (plain simple replies): random reads must return the image's bytes.
    private static void AssertGoodClientReads(int port, byte[] expected, Random random)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(IPAddress.Loopback, port);
        socket.ReceiveTimeout = 10000;
        Receive(socket, 18);
        socket.Send(Handshake("x", structured: false));
        ReadGoReplies(socket);
        for (int i = 0; i < 8; i++)
        {
            int length = random.Next(1, 256 << 10);
            long offset = random.NextInt64(expected.Length - length);
            var request = new byte[NbdProtocol.RequestSize];
            BinaryPrimitives.WriteUInt32BigEndian(request, NbdProtocol.RequestMagic);
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
            BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
            socket.Send(request);
            byte[] reply = Receive(socket, NbdProtocol.SimpleReplySize + length);
            Assert.Equal(NbdProtocol.SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(reply));
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
            Assert.Equal((ulong)i, BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
            Assert.True(reply.AsSpan(NbdProtocol.SimpleReplySize).SequenceEqual(expected.AsSpan((int)offset, length)), $"read {offset}+{length} differs");
        }
    }

    // Option replies up to the ACK of NBD_OPT_GO (magic, option, type, length, data).
    private static void ReadGoReplies(Socket socket)
    {
        while (true)
        {
            byte[] header = Receive(socket, 20);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            Receive(socket, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
            Assert.True(type < 0x80000000, $"option error {type:x}");
            if (type == NbdProtocol.RepAck) return;
        }
    }

    private static byte[] Receive(Socket socket, int length)
    {
        var buffer = new byte[length];
        for (int got = 0; got < length;)
        {
            int n = socket.Receive(buffer, got, length - got, SocketFlags.None);
            if (n == 0) throw new SocketException((int)SocketError.ConnectionReset);
            got += n;
        }
        return buffer;
    }

    private static void DrainFor(Socket socket, int milliseconds)
    {
        var buffer = new byte[1 << 16];
        var until = DateTime.UtcNow.AddMilliseconds(milliseconds);
        while (DateTime.UtcNow < until && socket.Poll(5000, SelectMode.SelectRead))
            if (socket.Receive(buffer) == 0) return;
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static void Mutate(byte[] bytes, Random random, int count, int from, int limit)
    {
        if (limit <= from) return;
        for (int i = 0; i < count; i++) bytes[random.Next(from, limit)] ^= (byte)random.Next(1, 256);
    }
}
