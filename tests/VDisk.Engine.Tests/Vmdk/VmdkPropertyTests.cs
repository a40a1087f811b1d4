// Random operation sequences against a flat byte-array model (DESIGN.md "Testing strategy"), and the
// write order of sparse extents: a grain table never reaches the file before the grains it points to.
using CsCheck;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;
using Xunit;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkPropertyTests
{
    private const int SmallGrain = 4096;

    [Theory]
    [InlineData(ImageSubformat.MonolithicSparse)]
    [InlineData(ImageSubformat.TwoGbMaxExtentSparse)]
    [InlineData(ImageSubformat.MonolithicFlat)]
    public void RandomWritesZeroesAndReopensMatchAFlatModel(ImageSubformat subformat)
    {
        const long Size = (6 << 20) + 1024; // three grain tables of 4 KiB grains, and a partial last grain
        var operation = Gen.Select(Gen.Int[0, 5], Gen.Long[0, Size - 1], Gen.Int[1, 3 * SmallGrain], Gen.Int[0, 1 << 20]);
        operation.Array[1, 30].Sample(ops =>
        {
            using var dir = new TempFolder();
            string path = dir.File("p.vmdk");
            CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = Size, ClusterSize = SmallGrain });
            var model = new byte[Size];
            var disk = ImageChain.Open(path, new OpenOptions { Writable = true });
            try
            {
                foreach (var (kind, offset, requested, seed) in ops)
                {
                    int length = (int)Math.Min(requested, Size - offset);
                    switch (kind)
                    {
                        case 0 or 1 or 2:
                            var data = VmdkTestData.Pattern(length, seed);
                            disk.Write(offset, data);
                            data.CopyTo(model, offset);
                            break;
                        case 3:
                            disk.WriteZeroes(offset, length, unmap: seed % 2 == 0);
                            Array.Clear(model, (int)offset, length);
                            break;
                        default:
                            disk.Dispose();
                            disk = ImageChain.Open(path, new OpenOptions { Writable = true });
                            break;
                    }
                }
            }
            finally
            {
                disk.Dispose();
            }
            using var check = ImageChain.Open(path);
            VmdkTestData.AssertContent(check, Size, new[] { (0L, model) });
        }, iter: 25, threads: 1);
    }

    [Fact]
    public void GrainTablesReachTheFileOnlyAfterTheirGrains()
    {
        using var dir = new TempFolder();
        string path = dir.File("o.vmdk");
        long size = 64 << 20; // 16 grain tables of 4 KiB grains
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Size = size, ClusterSize = SmallGrain });
        var header = VmdkCreator.SparseHeader(size / 512, SmallGrain / 512, compressed: false);
        var storage = new OrderCheckingStorage(new MemoryStorage(path, File.ReadAllBytes(path)),
            tablesStart: header.RgdOffset * 512, grainsStart: header.Overhead * 512);
        var extent = new VmdkSparseExtent(storage, 0, header, writable: true, cacheCapacity: 2); // small cache: evictions write tables too
        var writes = new List<(long, byte[])>();
        for (int i = 0; i < 12; i++)
        {
            long offset = i * (2L << 20) + i * SmallGrain;
            var run = extent.Allocate(offset, SmallGrain);
            var data = VmdkTestData.Pattern(SmallGrain, i);
            storage.WriteAt(run.Offset, data);
            extent.Link(offset, run);
            writes.Add((offset, data));
        }
        extent.Flush();
        Assert.True(storage.TableWrites > 0);

        using var driver = VmdkDriver.Open(storage, writable: false);
        using var disk = new VirtualDisk(path, driver, null, writable: false);
        VmdkTestData.AssertContent(disk, size, writes);
    }

    // Fails any write into the grain table area made while grain data written since the last flush is not yet durable.
    private sealed class OrderCheckingStorage(IStorage inner, long tablesStart, long grainsStart) : StorageWrapper(inner)
    {
        private bool _unflushedGrains;

        public int TableWrites { get; private set; }

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            Record(offset);
            Inner.WriteAt(offset, data);
        }

        public override void WriteZeroes(long offset, long length)
        {
            Record(offset);
            Inner.WriteZeroes(offset, length);
        }

        public override void Flush()
        {
            _unflushedGrains = false;
            Inner.Flush();
        }

        private void Record(long offset)
        {
            if (offset >= grainsStart)
            {
                _unflushedGrains = true;
            }
            else if (offset >= tablesStart)
            {
                Assert.False(_unflushedGrains, $"grain table write at 0x{offset:x} before the grains it maps were flushed");
                TableWrites++;
            }
        }
    }
}
