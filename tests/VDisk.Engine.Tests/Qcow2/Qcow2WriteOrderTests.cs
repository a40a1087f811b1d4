// The recorded write order of qcow2 metadata operations (DESIGN.md "Caches with dependencies"): each write
// is classified by what it landed on (header, refcount table or block, L1, L2, guest data) and the sequence,
// with the flushes between, is asserted. A missing barrier changes the sequence and fails the test.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2WriteOrderTests
{
    [Fact]
    public void AnAllocatingWriteFlushesCountsAndDataThenTheL2TableThenTheL1Entry()
    {
        var (memory, recorder) = Recorded(new CreateOptions { Size = 4 << 20 });
        using (var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(recorder, true), null, true))
        {
            disk.Write(1 << 20, new byte[4096].Select(_ => (byte)7).ToArray());
            disk.Flush();
        }
        Assert.Equal("data refcount-block FLUSH L2 FLUSH L1 FLUSH", Sequence(memory, recorder));
    }

    [Fact]
    public void WithLazyRefcountsTheCleanHeaderComesAfterEverythingItVouchesFor()
    {
        var (memory, recorder) = Recorded(new CreateOptions { Size = 4 << 20, LazyRefcounts = true });
        using (var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(recorder, true), null, true))
            disk.Write(1 << 20, new byte[4096].Select(_ => (byte)7).ToArray());
        // The dirty bit is durable before anything else; counts are not ordered against the tables (the dirty bit
        // covers them), but the header that clears the bit waits for all of them.
        Assert.Equal("header FLUSH data FLUSH L2 FLUSH L1 refcount-block FLUSH header FLUSH", Sequence(memory, recorder));
    }

    [Fact]
    public void AGrowingRefcountTableIsDurableBeforeTheHeaderPointsAtIt()
    {
        // 512-byte clusters and 64-bit refcounts: the one-cluster table covers 2 MiB of the file.
        var (memory, recorder) = Recorded(new CreateOptions { Size = 4 << 20, ClusterSize = 512, RefcountBits = 64 });
        using (var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(recorder, true), null, true))
            disk.Write(0, Images.Pattern(3 << 20, 1));
        string sequence = Sequence(memory, recorder);
        int header = sequence.IndexOf("header", StringComparison.Ordinal);
        Assert.True(header > 0, sequence);
        Assert.EndsWith("refcount-table FLUSH ", sequence[..header]); // the new table, made durable, then the header
        Assert.StartsWith("header FLUSH", sequence[header..]);       // and the switch is durable before the old table is freed
    }

    private static (MemoryStorage Memory, PowerLossStorage Recorder) Recorded(CreateOptions options)
    {
        var memory = new MemoryStorage("o.qcow2");
        Qcow2Creator.WriteEmpty(memory, options, options.Size!.Value, null, null);
        return (memory, new PowerLossStorage(memory));
    }

    // The recorded changes as words: what each write landed on (judged from the final image), runs of one kind merged.
    private static string Sequence(MemoryStorage memory, PowerLossStorage recorder)
    {
        var bytes = memory.ToArray();
        var header = Qcow2Header.Parse(bytes, "o");
        long cs = header.ClusterSize;
        var refcountBlocks = Entries(bytes, header.RefcountTableOffset, header.RefcountTableClusters * cs / 8).ToHashSet();
        var l2Tables = Entries(bytes, header.L1TableOffset, header.L1Size).ToHashSet();
        var words = new List<string>();
        foreach (var change in recorder.Changes)
        {
            string word = change.Kind switch
            {
                RecordedChangeKind.Flush => "FLUSH",
                RecordedChangeKind.Write or RecordedChangeKind.Zero => Classify(change.Offset), // zeroes fill the rest of a new cluster
                _ => change.Kind.ToString(),
            };
            if (words.Count == 0 || words[^1] != word || word == "FLUSH") words.Add(word);
        }
        return string.Join(' ', words);

        string Classify(long offset)
        {
            long cluster = offset / cs * cs;
            if (cluster == 0) return "header";
            if (offset >= header.L1TableOffset && offset < header.L1TableOffset + Math.Max(cs, header.L1Size * 8L)) return "L1";
            if (refcountBlocks.Contains(cluster)) return "refcount-block";
            if (l2Tables.Contains(cluster)) return "L2";
            if (offset >= header.RefcountTableOffset && offset < header.RefcountTableOffset + header.RefcountTableClusters * cs) return "refcount-table";
            return "data";
        }
    }

    private static IEnumerable<long> Entries(byte[] bytes, long offset, long count)
    {
        for (long i = 0; i < count; i++)
            if ((long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)(offset + i * 8))) & Qcow2Entries.OffsetMask) is var e and not 0)
                yield return e;
    }
}
