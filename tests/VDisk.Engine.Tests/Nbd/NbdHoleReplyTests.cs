// READ replies with holes (proto.md "Structured reply types": NBD_REPLY_TYPE_OFFSET_DATA / NBD_REPLY_TYPE_OFFSET_HOLE,
// "Request flags": NBD_CMD_FLAG_DF). A raw client that negotiated structured replies reads a range mixing data, a
// zero cluster and unallocated space: the reply holds hole chunks for the zero ranges and data chunks for the rest,
// covering the range exactly once, NBD_REPLY_FLAG_DONE only on the last; reassembled it is the image's content. With
// NBD_CMD_FLAG_DF it is one chunk. A client without structured replies gets every byte in a simple reply. Real
// clients (nbdcopy, qemu-img convert, qemu-io) read the same mixed image exactly.
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using VDisk.Engine.Chain;
using VDisk.Engine.Nbd;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Nbd;

public class NbdHoleReplyTests
{
    private const long Size = 8 << 20;

    // Data at 0 (64k) and 1M (1.5M), a zero cluster at 2M+256k..., zeroes written as data at 5M, data at the end;
    // everything else unallocated.
    private static string MakeImage(TempFolder dir)
    {
        string path = dir.File("h.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", path, Size.ToString());
        Qemu.Io("-f", "qcow2", "-t", "writeback", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k",
            "-c", "write -P 0x44 3M 64k", "-c", "write -z 3M 64k", "-c", "write -P 0 5M 64k", "-c", $"write -P 0x33 {Size - 1536} 1536", path);
        return path;
    }

    private static byte[] Content(string image)
    {
        var bytes = new byte[Size];
        using var disk = ImageChain.Open(image);
        disk.Read(0, bytes);
        return bytes;
    }

    [SkippableFact]
    public void AStructuredReadOfDataAndHolesSendsHoleChunksAndReassemblesExactly()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir);
        byte[] expected = Content(image);
        using var server = new NbdServer(new[] { new NbdExport("x", ImageChain.Open(image)) });
        int port = server.ListenTcp(IPAddress.Loopback, 0).Port;
        using var client = NbdRawClient.Connect(port, "x", structured: true);

        // 0 .. 4M: data, unallocated, data, unallocated, a zero cluster, unallocated.
        var chunks = client.Read(7, 0, 0, 4 << 20);
        Assert.Contains(chunks, c => c.Type == NbdProtocol.ReplyTypeOffsetHole);
        Assert.Contains(chunks, c => c.Type == NbdProtocol.ReplyTypeOffsetData);
        Assert.All(chunks, c => Assert.True(c.Type is NbdProtocol.ReplyTypeOffsetHole or NbdProtocol.ReplyTypeOffsetData, $"chunk type {c.Type}"));
        Assert.All(chunks.Take(chunks.Count - 1), c => Assert.Equal(0, c.Flags & NbdProtocol.ReplyFlagDone));
        Assert.Equal(NbdProtocol.ReplyFlagDone, chunks[^1].Flags & NbdProtocol.ReplyFlagDone);
        var rebuilt = Reassemble(chunks, 0, 4 << 20);
        Assert.True(rebuilt.AsSpan().SequenceEqual(expected.AsSpan(0, 4 << 20)), "the reassembled reply differs from the image");
        // The zero cluster at 3M and the unallocated 64k..1M are holes; the written zeroes at 5M are outside this read.
        Assert.Contains(chunks, c => c.Type == NbdProtocol.ReplyTypeOffsetHole && c.Offset <= 3 << 20 && c.Offset + c.Length >= (3 << 20) + 65536);
        Assert.Contains(chunks, c => c.Type == NbdProtocol.ReplyTypeOffsetHole && c.Offset <= 65536 && c.Offset + c.Length >= 1 << 20);

        // An unaligned read across the end of the data at 1M+1.5M into the hole after it.
        long from = (1 << 20) + (1536 << 10) - 1000;
        chunks = client.Read(8, 0, from, 100_000);
        Assert.Equal(new[] { NbdProtocol.ReplyTypeOffsetData, NbdProtocol.ReplyTypeOffsetHole }, chunks.Select(c => c.Type));
        Assert.True(Reassemble(chunks, from, 100_000).AsSpan().SequenceEqual(expected.AsSpan((int)from, 100_000)));

        // A range that is all hole is one hole chunk; zeroes written as data stay data.
        chunks = client.Read(9, 0, 6 << 20, 65536);
        Assert.Equal(new[] { NbdProtocol.ReplyTypeOffsetHole }, chunks.Select(c => c.Type));
        chunks = client.Read(10, 0, 5 << 20, 65536);
        Assert.Equal(new[] { NbdProtocol.ReplyTypeOffsetData }, chunks.Select(c => c.Type));
        Assert.True(Reassemble(chunks, 5 << 20, 65536).AsSpan().SequenceEqual(new byte[65536]));
    }

    [SkippableFact]
    public void DontFragmentGetsOneChunk()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir);
        byte[] expected = Content(image);
        using var server = new NbdServer(new[] { new NbdExport("x", ImageChain.Open(image)) });
        int port = server.ListenTcp(IPAddress.Loopback, 0).Port;
        using var client = NbdRawClient.Connect(port, "x", structured: true);

        var chunks = client.Read(1, NbdProtocol.CmdFlagDf, 0, 4 << 20);
        Assert.Single(chunks);
        Assert.Equal(NbdProtocol.ReplyTypeOffsetData, chunks[0].Type);
        Assert.True(Reassemble(chunks, 0, 4 << 20).AsSpan().SequenceEqual(expected.AsSpan(0, 4 << 20)));
        chunks = client.Read(2, NbdProtocol.CmdFlagDf, 6 << 20, 65536);
        Assert.Equal(new[] { NbdProtocol.ReplyTypeOffsetHole }, chunks.Select(c => c.Type));
    }

    [SkippableFact]
    public void AClientWithoutStructuredRepliesGetsEveryByte()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir);
        byte[] expected = Content(image);
        using var server = new NbdServer(new[] { new NbdExport("x", ImageChain.Open(image)) });
        int port = server.ListenTcp(IPAddress.Loopback, 0).Port;
        using var client = NbdRawClient.Connect(port, "x", structured: false);
        foreach (var (offset, length) in new[] { (0L, 4 << 20), ((1 << 20) + 5L, 3 << 20), (6L << 20, 65536), (Size - 70000, 70000) })
        {
            byte[] data = client.SimpleRead(3, offset, length);
            Assert.True(data.AsSpan().SequenceEqual(expected.AsSpan((int)offset, length)), $"read {offset}+{length} differs");
        }
    }

    [SkippableFact]
    public void RealClientsReadTheMixedImageExactly()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir);
        string expected = ChainImages.Sha(image);
        var (server, uri) = NbdTools.Serve(image);
        using (server)
        {
            string viaNbdcopy = dir.File("n.raw"), viaQemu = dir.File("q.raw");
            NbdTools.Run("nbdcopy", uri, viaNbdcopy);
            NbdTools.Run("qemu-img", "convert", "-O", "raw", uri, viaQemu);
            Assert.Equal(expected, NbdTools.FileSha(viaNbdcopy));
            Assert.Equal(expected, NbdTools.FileSha(viaQemu));
            // qemu-io reads with structured replies: each pattern over ranges spanning data and holes.
            string io = NbdTools.Run("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x22 1M 1536k", "-c", "read -P 0 64k 960k",
                "-c", "read -P 0 3M 64k", "-c", "read -P 0 6M 1M", "-c", $"read -P 0x33 {Size - 1536} 1536", uri);
            Assert.DoesNotContain("Pattern verification failed", io);
            Assert.DoesNotContain("error", io, StringComparison.OrdinalIgnoreCase);
        }
    }

    private static byte[] Reassemble(IReadOnlyList<NbdRawClient.Chunk> chunks, long offset, int length)
    {
        var bytes = new byte[length];
        var covered = new bool[length];
        foreach (var c in chunks)
        {
            Assert.True(c.Offset >= offset && c.Offset + c.Length <= offset + length, $"chunk {c.Offset}+{c.Length} is outside the read");
            for (long i = c.Offset - offset; i < c.Offset - offset + c.Length; i++)
            {
                Assert.False(covered[i], $"byte {offset + i} is sent twice");
                covered[i] = true;
            }
            if (c.Type == NbdProtocol.ReplyTypeOffsetData) c.Data.CopyTo(bytes, c.Offset - offset);
        }
        Assert.True(Array.TrueForAll(covered, b => b), "the chunks leave part of the read uncovered");
        return bytes;
    }
}
