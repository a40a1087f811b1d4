// Images VDisk creates and writes pass `qemu-img check` and read back identically through qemu.
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class Qcow2CreateInteropTests
{
    [SkippableTheory]
    [InlineData("1.1", 65536, 16, false, Preallocation.Off)]
    [InlineData("0.10", 65536, 16, false, Preallocation.Off)]
    [InlineData("1.1", 512, 1, false, Preallocation.Off)]
    [InlineData("1.1", 4096, 64, true, Preallocation.Off)]
    [InlineData("1.1", 2 << 20, 16, false, Preallocation.Metadata)]
    [InlineData("1.1", 65536, 16, false, Preallocation.Falloc)]
    [InlineData("1.1", 65536, 16, false, Preallocation.Full)]
    [InlineData("0.10", 4096, 16, false, Preallocation.Metadata)]
    public void CreatedAndWrittenImagesCheckCleanAndMatch(string compat, int clusterSize, int refcountBits, bool lazy, Preallocation prealloc)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("a.qcow2"), new CreateOptions
        {
            Size = 32 << 20, Compat = compat, ClusterSize = clusterSize, RefcountBits = refcountBits,
            LazyRefcounts = lazy, Preallocation = prealloc,
        });
        Qemu.CheckClean(path);
        var raw = new byte[32 << 20];
        using (var disk = Images.OpenWritable(path))
        {
            for (int i = 0; i < 40; i++)
            {
                long offset = (long)i * 797_113 % (raw.Length - 70_000);
                var data = Images.Pattern(1 + i * 1700, i);
                disk.Write(offset, data);
                data.CopyTo(raw, offset);
            }
        }
        Qemu.CheckClean(path);
        string rawPath = dir.File("expected.raw");
        File.WriteAllBytes(rawPath, raw);
        Qemu.AssertIdentical(path, rawPath, "-f", "qcow2", "-F", "raw");
    }
}
