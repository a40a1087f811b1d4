// Header byte fixtures (qcow2.rst "Header") and validation of every field against its limits.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2HeaderTests
{
    [Fact]
    public void SerialisesVersion3HeaderFieldByField()
    {
        var header = new Qcow2Header
        {
            Version = 3, ClusterBits = 16, Size = 20L << 30, L1Size = 40, L1TableOffset = 0x30000,
            RefcountTableOffset = 0x10000, RefcountTableClusters = 1, RefcountOrder = 4,
            CompatibleFeatures = Qcow2Features.LazyRefcounts, BackingFile = "base.qcow2",
        };
        header.BackingFormat = "qcow2";
        header.Extensions.Add(Qcow2HeaderExtension.FeatureNameTable());
        var b = header.Serialize();
        Assert.Equal(65536, b.Length);
        Assert.Equal(new byte[] { 0x51, 0x46, 0x49, 0xfb }, b[0..4]);                 // magic "QFI\xfb"
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(4)));           // version
        Assert.Equal(16u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(20)));         // cluster_bits
        Assert.Equal(20UL << 30, BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(24)));  // size
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(32)));          // crypt_method
        Assert.Equal(40u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(36)));         // l1_size
        Assert.Equal(0x30000UL, BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(40)));   // l1_table_offset
        Assert.Equal(0x10000UL, BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(48)));   // refcount_table_offset
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(56)));          // refcount_table_clusters
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(60)));          // nb_snapshots
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(72)));         // incompatible features
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(80)));         // compatible: lazy refcounts
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(96)));          // refcount_order (16 bits)
        Assert.Equal(112u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(100)));       // header_length
        Assert.Equal(0, b[104]);                                                        // compression_type zlib
        Assert.Equal(0xe2792acau, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(112))); // first extension: backing format
        Assert.Equal(5u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(116)));
        Assert.Equal("qcow2"u8.ToArray(), b[120..125]);
        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(8));
        Assert.Equal(10u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(16)));         // backing_file_size
        Assert.Equal("base.qcow2"u8.ToArray(), b[(int)backingOffset..((int)backingOffset + 10)]);

        var parsed = Qcow2Header.Parse(b, "fixture");
        Assert.Equal("base.qcow2", parsed.BackingFile);
        Assert.Equal("qcow2", parsed.BackingFormat);
        Assert.True(parsed.LazyRefcounts);
        Assert.Contains(parsed.Extensions, e => e.Type == Qcow2HeaderExtension.BackingFormatType);
        Assert.Contains(parsed.Extensions, e => e.Type == Qcow2HeaderExtension.FeatureNameTableType);
    }

    [Fact]
    public void Version2HeaderIs72BytesWithoutExtensionsArea()
    {
        var header = new Qcow2Header { Version = 2, ClusterBits = 12, Size = 1 << 20, L1Size = 1, L1TableOffset = 0x3000, RefcountTableOffset = 0x1000, RefcountTableClusters = 1 };
        var b = header.Serialize();
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(4)));
        Assert.True(b.AsSpan(72, 8).IndexOfAnyExcept((byte)0) < 0); // end-of-extensions marker right after the 72-byte header
        var parsed = Qcow2Header.Parse(b, "v2");
        Assert.Equal("0.10", parsed.Compat);
        Assert.Equal(16, parsed.RefcountBits);
    }

    public static TheoryData<int, long, string> BadFields => new()
    {
        { Qcow2Header.ClusterBitsOffset, 8, "cluster_bits" },
        { Qcow2Header.ClusterBitsOffset, 22, "cluster_bits" },
        { Qcow2Header.L1SizeOffset, 0, "l1_size" },
        { Qcow2Header.L1SizeOffset, 5_000_000, "l1_size" },
        { Qcow2Header.RefcountTableClustersOffset, 0, "refcount_table_clusters" },
        { Qcow2Header.RefcountTableClustersOffset, 1000, "refcount_table_clusters" },
        { Qcow2Header.CryptMethodOffset, 7, "crypt_method" },
        { Qcow2Header.SnapshotCountOffset, 70000, "nb_snapshots" },
        { Qcow2Header.RefcountOrderOffset, 7, "refcount_order" },
        { Qcow2Header.HeaderLengthOffset, 100, "header_length" },
        { Qcow2Header.BackingFileSizeOffset, 2000, "backing_file_size" },
    };

    [Theory]
    [MemberData(nameof(BadFields))]
    public void RejectsOutOfRangeFieldsNamingTheField(int fieldOffset, long value, string field)
    {
        var b = ValidHeaderBytes();
        if (fieldOffset == Qcow2Header.BackingFileSizeOffset) BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), 512);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(fieldOffset), (uint)value);
        var e = Assert.Throws<VDiskException>(() => Qcow2Header.Parse(b, "bad.qcow2"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(field, e.Message);
        Assert.Contains("bad.qcow2", e.Message);
    }

    [Theory]
    [InlineData(Qcow2Header.L1TableOffsetOffset, 0x30001UL, "l1_table_offset")]
    [InlineData(Qcow2Header.RefcountTableOffsetOffset, 0x1200UL, "refcount_table_offset")]
    [InlineData(Qcow2Header.RefcountTableOffsetOffset, 0x0100_0000_0000_0000UL, "refcount_table_offset")]
    [InlineData(Qcow2Header.SizeOffset, 0x7000_0000_0000_0000UL, "size")]
    public void RejectsBadOffsetsAndSizes(int fieldOffset, ulong value, string field)
    {
        var b = ValidHeaderBytes();
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(fieldOffset), value);
        var e = Assert.Throws<VDiskException>(() => Qcow2Header.Parse(b, "bad.qcow2"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(field, e.Message);
    }

    [Theory]
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL, 1u)] // offset + size wraps to 0 (FuzzRegressions/qcow2/backing-offset-wraps)
    [InlineData(0xFFFF_FFFF_FFFF_FE00UL, 1023u)]
    [InlineData(65536UL, 1u)]
    public void RejectsBackingNamesOutsideTheFirstCluster(ulong offset, uint size)
    {
        var b = ValidHeaderBytes();
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(Qcow2Header.BackingFileOffsetOffset), offset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(Qcow2Header.BackingFileSizeOffset), size);
        var e = Assert.Throws<VDiskException>(() => Qcow2Header.Parse(b, "bad.qcow2"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("backing_file_offset", e.Message);
    }

    [Fact]
    public void RefusesUnknownIncompatibleFeaturesAndExtendedL2()
    {
        foreach (var (bits, words) in new[] { (1UL << 9, "unknown feature bit 9"), (Qcow2Features.ExtendedL2, "extended L2"), (Qcow2Features.ExternalDataFile, "external data file") })
        {
            var b = ValidHeaderBytes();
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(Qcow2Header.IncompatibleOffset), bits);
            var e = Assert.Throws<VDiskException>(() => Qcow2Driver.Open(new MemoryStorage("f.qcow2", b), false));
            Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
            Assert.Contains(words, e.Message);
        }
    }

    [Fact]
    public void CorruptBitAllowsReadingButRefusesWriting()
    {
        var b = ValidHeaderBytes();
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(Qcow2Header.IncompatibleOffset), Qcow2Features.Corrupt);
        using (var reader = Qcow2Driver.Open(new MemoryStorage("c.qcow2", b), false)) Assert.True(reader.Details.Corrupt);
        var e = Assert.Throws<VDiskException>(() => Qcow2Driver.Open(new MemoryStorage("c.qcow2", b), true));
        Assert.Equal(VDiskErrorKind.ReadOnly, e.Kind);
        Assert.Contains("corrupt", e.Message);
    }

    // The header is rewritten (the refcount table moves: 1 KiB clusters and 64-bit refcounts cover 16 MiB per table
    // cluster) and must keep an unknown extension, unknown header fields past byte 112 and the feature name table.
    [Fact]
    public void UnknownExtensionsAndFieldsSurviveAHeaderRewrite()
    {
        var bytes = WithUnknowns(new CreateOptions { Size = 24 << 20, ClusterSize = 1024, RefcountBits = 64 });
        var before = Qcow2Header.Parse(bytes, "x");
        var image = new MemoryStorage("x.qcow2", bytes);
        using (var disk = new VirtualDisk("x", Qcow2Driver.Open(image, true), null, true)) disk.Write(0, Images.Pattern(17 << 20, 1));
        var after = Qcow2Header.Parse(image.ToArray(), "x");
        Assert.NotEqual(before.RefcountTableOffset, after.RefcountTableOffset); // the header really was rewritten
        Assert.Contains(after.Extensions, e => e.Type == 0x12345678 && e.Data.SequenceEqual(new byte[] { 1, 2, 3 }));
        Assert.Equal(new byte[] { 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7 }, after.UnknownFields);
        Assert.Equal(120, after.HeaderLength);
        Assert.Equal(before.Extensions.Single(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType).Data,
            after.Extensions.Single(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType).Data);
    }

    // Changing a field moves everything after it: the updater re-serialises the extensions and the backing name, and
    // writes only the bytes that changed.
    [Fact]
    public void TheUpdaterRewritesExtensionsAndWritesOnlyWhatChanged()
    {
        var bytes = WithUnknowns(new CreateOptions { Size = 1 << 20 });
        var memory = new MemoryStorage("x.qcow2", bytes);
        var recorder = new PowerLossStorage(memory);
        using (var image = Qcow2Image.Open(recorder, writable: true, Qcow2CacheBudget.Default))
        {
            var updater = image.HeaderUpdater;
            updater.Update(h =>
            {
                h.BackingFile = "base.raw";
                h.BackingFormat = "raw"; // a new extension in front of the unknown one
            });
            updater.Update(h => h.IncompatibleFeatures |= Qcow2Features.Corrupt);
        }
        var after = Qcow2Header.Parse(memory.ToArray(), "x");
        Assert.Equal("base.raw", after.BackingFile);
        Assert.Equal("raw", after.BackingFormat);
        Assert.Contains(after.Extensions, e => e.Type == 0x12345678 && e.Data.SequenceEqual(new byte[] { 1, 2, 3 }));
        Assert.Equal(new byte[] { 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7 }, after.UnknownFields);
        Assert.True(after.IsCorrupt);
        var headerWrites = recorder.Changes.Where(c => c.Kind == RecordedChangeKind.Write && c.Offset < 512).ToList();
        Assert.Contains(headerWrites, w => w.Offset == Qcow2Header.IncompatibleOffset + 7 && w.Length == 1); // one bit: one byte
    }

    [Fact]
    public void AHeaderThatNoLongerFitsIsRefusedAndLeftAlone()
    {
        var bytes = WithUnknowns(new CreateOptions { Size = 1 << 20, ClusterSize = 1024 });
        var storage = new MemoryStorage("x.qcow2", bytes);
        using var image = Qcow2Image.Open(storage, writable: true, Qcow2CacheBudget.Default);
        var before = storage.ToArray()[..1024];
        var e = Assert.Throws<VDiskException>(() => image.HeaderUpdater.Update(h => h.BackingFile = new string('b', 600)));
        Assert.Contains("do not fit", e.Message);
        Assert.Equal(before, storage.ToArray()[..1024]);
        Assert.Null(image.Header.BackingFile);
    }

    // A valid image whose header has an unknown extension and eight bytes of unknown fields (header_length 120).
    private static byte[] WithUnknowns(CreateOptions options)
    {
        var storage = new MemoryStorage("x.qcow2");
        Qcow2Creator.WriteEmpty(storage, options, options.Size!.Value, null, null);
        var bytes = storage.ToArray();
        var header = Qcow2Header.Parse(bytes, "x");
        header.Extensions.Insert(0, new Qcow2HeaderExtension(0x12345678, new byte[] { 1, 2, 3 }));
        header.UnknownFields = new byte[] { 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7 };
        header.Serialize(mayDropFeatureTable: false).CopyTo(bytes, 0);
        return bytes;
    }

    private static byte[] ValidHeaderBytes()
    {
        var storage = new MemoryStorage("v.qcow2");
        Qcow2Creator.WriteEmpty(storage, new CreateOptions { Size = 1 << 30 }, 1 << 30, null, null);
        return storage.ToArray();
    }
}
