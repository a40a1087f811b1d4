// qcow2 write -> reopen -> read round trips on real files, for each header variant we create.
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2RoundTripTests
{
    private const int DiskSize = 16 << 20;

    public static TheoryData<string, int, int, bool> Variants => new()
    {
        { "1.1", 65536, 16, false },
        { "0.10", 65536, 16, false },
        { "1.1", 512, 1, false },
        { "1.1", 4096, 64, true },
        { "1.1", 2 << 20, 8, false },
        { "1.1", 1024, 2, true },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void WritesReadBackAfterReopen(string compat, int clusterSize, int refcountBits, bool lazy)
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("a.qcow2"), new CreateOptions
        {
            Size = DiskSize, Compat = compat, ClusterSize = clusterSize, RefcountBits = refcountBits, LazyRefcounts = lazy,
        });
        var model = new byte[DiskSize];
        var writes = new (long Offset, int Length)[]
        {
            (0, 1), (clusterSize - 3, 7), (1 << 20, 200_000), (DiskSize - 5, 5), (3 * clusterSize + 17, clusterSize * 2 + 5),
        };
        using (var disk = Images.OpenWritable(path))
        {
            int seed = 1;
            foreach (var (offset, length) in writes)
            {
                var data = Images.Pattern(length, seed++);
                disk.Write(offset, data);
                data.CopyTo(model, offset);
            }
            Assert.Equal(model, Images.ReadAll(disk));
        }
        using (var disk = Images.OpenReadOnly(path))
            Assert.Equal(model, Images.ReadAll(disk));
    }
}
