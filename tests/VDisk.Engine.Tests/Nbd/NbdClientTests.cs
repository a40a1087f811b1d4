// Export-VDisk's engine (issue 12): the NBD server read and written by real clients. qemu-img convert, nbdcopy and
// nbdinfo through the export read exactly the guest content qemu-img reads from the image itself (qcow2, vmdk, vdi,
// raw, a 3-deep chain); qemu-img map through NBD agrees with the engine's map; NBD_OPT_LIST names the exports;
// qemu-io writes through a writable export and the image reads back through VDisk and checks clean.
using System.Net;
using System.Text.Json;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Nbd;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Nbd;

public class NbdClientTests
{
    private const long Size = 8 << 20;

    private static string MakeImage(TempFolder dir, string format, string options = "")
    {
        string path = dir.File("d." + format);
        var create = new List<string> { "create", "-q", "-f", format };
        if (options.Length > 0) create.AddRange(new[] { "-o", options });
        Qemu.Img(create.Concat(new[] { path, Size.ToString() }).ToArray());
        Qemu.Io("-f", format, "-t", "writeback", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k", "-c", "write -z 2M 256k",
            "-c", "write -P 0 5M 64k", "-c", $"write -P 0x33 {Size - 1536} 1536", path);
        return path;
    }

    [SkippableTheory]
    [InlineData("qcow2", "")]
    [InlineData("qcow2", "cluster_size=4096")]
    [InlineData("raw", "")]
    [InlineData("vdi", "")]
    [InlineData("vmdk", "")]
    [InlineData("vmdk", "subformat=monolithicFlat")]
    public void QemuImgConvertThroughTheExportReadsTheGuestContent(string format, string options)
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir, format, options);
        string expected = ChainImages.Sha(image);
        var (server, uri) = NbdTools.Serve(image);
        using (server)
        {
            string output = dir.File("out.raw");
            NbdTools.Run("qemu-img", "convert", "-O", "raw", uri, output);
            Assert.Equal(expected, NbdTools.FileSha(output));
            Assert.Equal(Size, new FileInfo(output).Length);
        }
    }

    [SkippableFact]
    public void AThreeDeepChainReadsAsQemuReadsIt()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 3);
        string expected = ChainImages.Sha(chain[^1]);
        var (server, uri) = NbdTools.Serve(chain[^1]);
        using (server)
        {
            string viaQemu = dir.File("q.raw"), viaNbdcopy = dir.File("n.raw");
            NbdTools.Run("qemu-img", "convert", "-O", "raw", uri, viaQemu);
            NbdTools.Run("nbdcopy", uri, viaNbdcopy);
            Assert.Equal(expected, NbdTools.FileSha(viaQemu));
            Assert.Equal(expected, NbdTools.FileSha(viaNbdcopy));
            AssertSameMap(chain[^1], uri);
        }
    }

    [SkippableTheory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    [InlineData("vmdk")]
    public void QemuImgMapThroughTheExportAgreesWithTheEngine(string format)
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir, format);
        var (server, uri) = NbdTools.Serve(image);
        using (server) AssertSameMap(image, uri);
    }

    // Data versus reads-as-zero, byte by byte over the disk: qemu-img map through NBD against the engine's block status.
    private static void AssertSameMap(string image, string uri)
    {
        var remote = Expand(NbdTools.Run("qemu-img", "map", "--output=json", uri));
        var local = new bool[Size / 512];
        using (var disk = ImageChain.Open(image, new OpenOptions { ForceShare = true }))
        {
            for (long pos = 0; pos < disk.Length;)
            {
                var status = disk.GetBlockStatus(pos, disk.Length - pos);
                for (long b = pos / 512; b < (pos + status.Length) / 512; b++) local[b] = status.Kind == ExtentKind.Data;
                pos += status.Length;
            }
        }
        Assert.Equal(local, remote);
        Assert.Contains(false, remote);
        Assert.Contains(true, remote);
    }

    private static bool[] Expand(string json)
    {
        var data = new bool[Size / 512];
        using var doc = JsonDocument.Parse(json);
        foreach (var range in doc.RootElement.EnumerateArray())
        {
            long start = range.GetProperty("start").GetInt64(), length = range.GetProperty("length").GetInt64();
            bool isData = range.GetProperty("data").GetBoolean();
            for (long b = start / 512; b < (start + length) / 512; b++) data[b] = isData;
        }
        return data;
    }

    [SkippableFact]
    public void NbdinfoListsExportsAndMapsHoles()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string a = MakeImage(dir, "qcow2");
        string b = dir.File("b.raw");
        Qemu.Img("create", "-q", "-f", "raw", b, "1M");
        var server = new NbdServer(new[] { new NbdExport("first", ImageChain.Open(a)), new NbdExport("second", ImageChain.Open(b), description: "the raw one") });
        using (server)
        {
            int port = server.ListenTcp(IPAddress.Loopback, 0).Port;
            string list = NbdTools.Run("nbdinfo", "--list", $"nbd://127.0.0.1:{port}");
            Assert.Contains("first", list);
            Assert.Contains("second", list);
            string map = NbdTools.Run("nbdinfo", "--map", $"nbd://127.0.0.1:{port}/first");
            Assert.Contains("data", map);
            Assert.Contains("hole,zero", map);
            string info = NbdTools.Run("nbdinfo", "--json", $"nbd://127.0.0.1:{port}/second");
            Assert.Contains("\"export-size\": 1048576", info);
            Assert.Contains("\"is_read_only\": true", info);
            Assert.Equal(0, NbdTools.TryRun("nbdinfo", $"nbd://127.0.0.1:{port}/nosuch").ExitCode == 0 ? 1 : 0);
        }
    }

    [SkippableFact]
    public void AUnixSocketExportServesNbdcopy()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir, "qcow2");
        string socket = dir.File("s.sock");
        var server = new NbdServer(new[] { new NbdExport("", ImageChain.Open(image)) });
        using (server)
        {
            server.ListenUnix(socket);
            string output = dir.File("u.raw");
            NbdTools.Run("nbdcopy", $"nbd+unix:///?socket={socket}", output);
            Assert.Equal(ChainImages.Sha(image), NbdTools.FileSha(output));
        }
        Assert.False(File.Exists(socket));
    }

    [SkippableFact]
    public void QemuIoWritesThroughAWritableExportAndTheImageChecksClean()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir, "qcow2");
        var (server, uri) = NbdTools.Serve(image, writable: true);
        using (server)
        {
            NbdTools.Run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 3M 1M", "-c", "write -z 0 32k", "-c", "discard 1M 64k",
                "-c", "flush", "-c", "read -P 0x5a 3M 1M", uri);
            Assert.Equal(1, server.Exports[0].ClientCount == 0 ? 1 : 0);
        }
        Qemu.CheckClean(image);
        NbdTools.Run("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x5a 3M 1M", "-c", "read -P 0 0 32k", "-c", "read -P 0 1M 64k",
            "-c", "read -P 0x11 32k 32k", image);
        using var disk = ImageChain.Open(image);
        var buffer = new byte[1 << 20];
        disk.Read(3 << 20, buffer);
        Assert.All(buffer, b => Assert.Equal(0x5a, b));
    }

    [SkippableFact]
    public void AReadOnlyExportRefusesWrites()
    {
        NbdTools.Require();
        using var dir = new TempFolder();
        string image = MakeImage(dir, "qcow2");
        string before = NbdTools.FileSha(image);
        var (server, uri) = NbdTools.Serve(image);
        using (server)
        {
            var (code, output) = NbdTools.TryRun("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", uri);
            Assert.True(code != 0 || output.Contains("read-only", StringComparison.OrdinalIgnoreCase) || output.Contains("not permitted", StringComparison.OrdinalIgnoreCase), output);
        }
        Assert.Equal(before, NbdTools.FileSha(image));
    }
}
