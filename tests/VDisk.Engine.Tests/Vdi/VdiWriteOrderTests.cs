// Metadata write order: blocks_allocated reaches the file (and a barrier passes) before the block map
// entries that point at new blocks, so a crash at any write leaves an image that opens, with at most a
// leaked block, and everything a completed flush acknowledged still there.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Storage;
using static VDisk.Engine.Tests.Vdi.VdiTestSupport;

namespace VDisk.Engine.Tests.Vdi;

public sealed class VdiWriteOrderTests
{
    [Fact]
    public void BlocksAllocatedThenBarrierThenBlockMap()
    {
        var inner = NewImage(8L * MiB, isStatic: false);
        var storage = new RecordingStorage(inner);
        using (var disk = Open(storage, writable: true))
        {
            disk.Write(5L * MiB, Pattern(0, 100, 1));
            disk.Write(2L * MiB, Pattern(0, 100, 2));
            Assert.DoesNotContain(storage.Events, e => e.StartsWith("write 512+")); // the map waits for a flush
            disk.Flush();
        }
        int header = storage.Events.IndexOf($"write {VdiHeader.BlocksAllocatedOffset}+4");
        int map = storage.Events.FindIndex(e => e.StartsWith("write 512+"));
        Assert.True(header >= 0 && map > header, string.Join("; ", storage.Events));
        Assert.Contains("flush", storage.Events.GetRange(header, map - header));
        AssertConsistent(inner.ToArray());
    }

    [Fact]
    public void ACrashAtAnyWriteLeavesAnImageThatOpens()
    {
        var baseImage = NewImage(8L * MiB, isStatic: false).ToArray();
        var first = Pattern(0, MiB + 300, 1);
        var second = Pattern(0, 700, 2);
        for (int budget = 0; budget < 200; budget++)
        {
            var inner = new MemoryStorage("crash.vdi", baseImage);
            var faulty = new FaultInjectingStorage(inner, budget);
            bool flushed = false, finished = false;
            try
            {
                using var disk = Open(faulty, writable: true);
                disk.Write(3L * MiB - 100, first);   // two new blocks
                disk.Write(7L * MiB, second);         // a third
                disk.Flush();
                flushed = true;
                disk.Write(0, second);                // a fourth, not flushed
                disk.WriteZeroes(3L * MiB, MiB, unmap: true);
                finished = true;
            }
            catch (IOException)
            {
            }

            using var reopened = Open(inner, writable: false); // never Corrupt
            var image = inner.ToArray();
            var header = VdiHeader.Parse(image.AsSpan(0, VdiHeader.SectorSize), image.Length, inner.Name);
            var map = VdiBlockMap.Parse(image.AsSpan((int)header.BlockMapOffset, (int)header.BlockMapLength), header, inner.Name);
            int referenced = Enumerable.Range(0, map.Count).Count(i => VdiBlockMap.IsAllocated(map[i]));
            Assert.True(referenced <= header.BlocksAllocated, $"budget {budget}: {referenced} entries, blocks_allocated {header.BlocksAllocated}");
            if (flushed)
            {
                var back = new byte[second.Length];
                reopened.Read(7L * MiB, back);
                Assert.Equal(second, back);
            }
            if (finished)
            {
                AssertConsistent(image, inner.Name);
                return; // every crash point before the end was covered
            }
        }
        Assert.Fail("the scenario never completed within the write budget");
    }

    private sealed class RecordingStorage(IStorage inner) : StorageWrapper(inner)
    {
        public List<string> Events { get; } = new();
        public override void WriteAt(long offset, ReadOnlySpan<byte> data) { Events.Add($"write {offset}+{data.Length}"); Inner.WriteAt(offset, data); }
        public override void Discard(long offset, long length) { Events.Add($"discard {offset}+{length}"); Inner.Discard(offset, length); }
        public override void WriteZeroes(long offset, long length) { Events.Add($"zeroes {offset}+{length}"); Inner.WriteZeroes(offset, length); }
        public override void SetLength(long length) { Events.Add($"length {length}"); Inner.SetLength(length); }
        public override void Flush() { Events.Add("flush"); Inner.Flush(); }
    }
}
