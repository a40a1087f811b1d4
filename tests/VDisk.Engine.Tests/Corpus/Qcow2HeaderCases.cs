// Corpus: every qcow2 header field (qcow2.rst "Header") of a version 2 and a version 3 image set to 0, to its
// maximum, to a misaligned value and to one just past its limit, plus the valid values around each limit.
// Fields of the backing file name are damaged in an overlay of a raw image. Stage and kind of each answer
// follow the header checks (Qcow2Header.Parse, Qcow2Driver feature checks); where qemu-img answers
// differently the case says why.
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;

namespace VDisk.Engine.Tests.Corpus;

internal static class Qcow2HeaderCases
{
    private const string ZeroOffsetDiffers = "QEMU accepts a zero table offset (it reads the table from the header cluster); VDisk refuses a table that would overlap the header";
    private const string V2ZeroFlag = "zero flag, which a version 2 image cannot have"; // bit 0 of a v2 L2 entry: corruption in QEMU
    private const string HighOffsetDiffers = "QEMU accepts table offsets up to 2^63 and reads zeroes past the end of the file; VDisk refuses offsets no table entry could address (from 2^56)";

    private sealed record FieldCase(string Label, ulong Value, Outcome Outcome, string? QemuDiffers = null);

    public static void Write(CorpusWriter w)
    {
        foreach (int version in new[] { 2, 3 })
        {
            var plain = new Qcow2Sample { Version = version };
            var withSnapshot = new Qcow2Sample { Version = version, WithSnapshot = true };
            var image = plain.Build();
            string v = $"qcow2-v{version}";
            Field(w, v, image, "version", 4, 4, new FieldCase[]
            {
                new("zero", 0, Outcome.Unsupported(Info, "version"), "QEMU probes a qcow2 magic with a version below 2 as raw (version 1 as its old qcow format)"),
                new("max", uint.MaxValue, Outcome.Unsupported(Info, "version")),
                new("one", 1, Outcome.Unsupported(Info, "version")),
                new("four", 4, Outcome.Unsupported(Info, "version")),
            });
            Field(w, v, image, "cluster_bits", 20, 4, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "cluster_bits")),
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "cluster_bits")),
                new("eight", 8, Outcome.Corrupt(Info, "cluster_bits")),
                new("misaligned-tables", 13, Outcome.Corrupt(Info, "offset")),
                new("overflow", 22, Outcome.Corrupt(Info, "cluster_bits")),
                new("nine-l1-too-small", 9, Outcome.Corrupt(Info, "l1_size")),
            });
            Field(w, v, image, "size", 24, 8, new FieldCase[]
            {
                new("zero", 0, Outcome.Valid),
                new("max", ulong.MaxValue, Outcome.Corrupt(Info, "size")),
                new("one-byte", 1, Outcome.Valid),
                new("misaligned", (1 << 20) + 1, Outcome.Valid),
                new("whole-l1", 2 << 20, Outcome.Valid),
                new("overflow", (2 << 20) + 1, Outcome.Corrupt(Info, "l1_size")),
                new("huge", 1UL << 62, Outcome.Corrupt(Info, "size")),
            });
            Field(w, v, image, "crypt_method", 32, 4, new FieldCase[]
            {
                // Legacy AES opens and maps, and its data needs the passphrase, in QEMU as in VDisk. LUKS without its header
                // extension is refused when opened ("Missing CRYPTO header for crypt method 2"; qemu-img 7.2 info crashes on it).
                new("aes", 1, Outcome.Fails(Read, VDiskErrorKind.PassphraseRequired, "passphrase")),
                new("luks", 2, Outcome.Corrupt(Info, "encryption header extension")),
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "crypt_method")),
                new("three", 3, Outcome.Corrupt(Info, "crypt_method")),
            });
            Field(w, v, image, "l1_size", 36, 4, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "l1_size")),
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "l1_size")),
                new("larger", 3, Outcome.Valid),
                new("largest", (32 << 20) / 8, Outcome.Valid),
                new("overflow", (32 << 20) / 8 + 1, Outcome.Corrupt(Info, "l1_size")),
            });
            Field(w, v, image, "l1_table_offset", 40, 8, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "l1_table_offset"), ZeroOffsetDiffers),
                new("max", ulong.MaxValue, Outcome.Corrupt(Info, "l1_table_offset")),
                new("misaligned", (ulong)plain.Offset(Qcow2Sample.L1Cluster) + 1, Outcome.Corrupt(Info, "l1_table_offset")),
                new("overflow", 1UL << 56, Outcome.Corrupt(Info, "l1_table_offset"), HighOffsetDiffers),
                new("past-eof", 1UL << 30, Outcome.Valid),
                new("at-refcount-table", (ulong)plain.Offset(Qcow2Sample.RefTableCluster), version == 2 ? Outcome.Corrupt(Map, V2ZeroFlag) : Outcome.Valid),
                new("at-l2", (ulong)plain.Offset(Qcow2Sample.L2Cluster), version == 2 ? Outcome.Corrupt(Map, V2ZeroFlag) : Outcome.Valid),
            });
            Field(w, v, image, "refcount_table_offset", 48, 8, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "refcount_table_offset"), ZeroOffsetDiffers),
                new("max", ulong.MaxValue, Outcome.Corrupt(Info, "refcount_table_offset")),
                new("misaligned", (ulong)plain.Offset(Qcow2Sample.RefTableCluster) + 8, Outcome.Corrupt(Info, "refcount_table_offset")),
                new("overflow", 1UL << 56, Outcome.Corrupt(Info, "refcount_table_offset"), HighOffsetDiffers),
                new("past-eof", 1UL << 30, Outcome.Valid),
            });
            Field(w, v, image, "refcount_table_clusters", 56, 4, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "refcount_table_clusters")),
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "refcount_table_clusters")),
                new("three", 3, Outcome.Valid),
                new("largest", (8 << 20) / 4096, Outcome.Valid),
                new("overflow", (8 << 20) / 4096 + 1, Outcome.Corrupt(Info, "refcount_table_clusters")),
            });
            Field(w, v, image, "nb_snapshots", 60, 4, new FieldCase[]
            {
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "nb_snapshots")),
                new("one-without-table", 1, Outcome.Corrupt(Info, "snapshots_offset"), ZeroOffsetDiffers),
                new("overflow", 65537, Outcome.Corrupt(Info, "nb_snapshots")),
            });
            Field(w, v, withSnapshot.Build(), "snapshots_offset", 64, 8, new FieldCase[]
            {
                new("zero", 0, Outcome.Corrupt(Info, "snapshots_offset"), ZeroOffsetDiffers),
                new("max", ulong.MaxValue, Outcome.Corrupt(Info, "snapshots_offset")),
                new("misaligned", (ulong)withSnapshot.Offset(Qcow2Sample.SnapshotTableCluster) + 8, Outcome.Corrupt(Info, "snapshots_offset")),
                new("overflow", 1UL << 56, Outcome.Corrupt(Info, "snapshots_offset"), HighOffsetDiffers),
            });
            if (version == 3) Version3Fields(w, v, image);
            w.Add($"{v}-valid", "qcow2", "image.qcow2", image, Outcome.Valid);
            w.Add($"{v}-valid-with-snapshot", "qcow2", "image.qcow2", withSnapshot.Build(), Outcome.Valid);
        }
        foreach (int bits in new[] { 9, 16 })
            w.Add($"qcow2-v3-valid-cluster-bits-{bits}", "qcow2", "image.qcow2", new Qcow2Sample { ClusterBits = bits }.Build(), Outcome.Valid);
        BackingFields(w);
    }

    private static void Version3Fields(CorpusWriter w, string v, byte[] image)
    {
        Field(w, v, image, "incompatible_features", 72, 8, new FieldCase[]
        {
            new("max", ulong.MaxValue, Outcome.Unsupported(Info, "incompatible")),
            new("dirty", 1, Outcome.Valid),
            new("corrupt", 2, Outcome.Valid),
            new("external-data-file", 4, Outcome.Unsupported(Info, "external data file"),
                "qemu-img info opens an image with an external data file without the data file; VDisk refuses the feature it does not support"),
            new("compression-bit-with-zlib", 8, Outcome.Corrupt(Info, "compression")),
            new("extended-l2", 16, Outcome.Unsupported(Info, "extended L2")),
            new("unknown-bit", 1UL << 40, Outcome.Unsupported(Info, "incompatible")),
        });
        Field(w, v, image, "compatible_features", 80, 8, new FieldCase[]
        {
            new("max", ulong.MaxValue, Outcome.Valid),
            new("lazy-refcounts", 1, Outcome.Valid),
        });
        Field(w, v, image, "autoclear_features", 88, 8, new FieldCase[]
        {
            new("max", ulong.MaxValue, Outcome.Valid,
                "QEMU refuses to read with the raw-external-data autoclear bit and no data file; VDisk ignores autoclear bits when reading (it clears them when it writes)"),
            new("bitmaps", 1, Outcome.Valid),
        });
        Field(w, v, image, "refcount_order", 96, 4, new FieldCase[]
        {
            new("zero", 0, Outcome.Valid),
            new("max", uint.MaxValue, Outcome.Corrupt(Info, "refcount_order")),
            new("sixty-four-bits", 6, Outcome.Valid),
            new("overflow", 7, Outcome.Corrupt(Info, "refcount_order")),
        });
        Field(w, v, image, "header_length", 100, 4, new FieldCase[]
        {
            new("zero", 0, Outcome.Corrupt(Info, "header_length")),
            new("max", uint.MaxValue, Outcome.Corrupt(Info, "header_length")),
            new("misaligned", 105, Outcome.Corrupt(Info, "header_length"), "qcow2.rst requires a multiple of 8 and VDisk checks it; QEMU does not"),
            new("shortest", 104, Outcome.Valid),
            new("overflow", 4096 + 8, Outcome.Corrupt(Info, "header_length")),
        });
        Field(w, v, image, "compression_type", 104, 1, new FieldCase[]
        {
            new("zstd-without-bit", 1, Outcome.Corrupt(Info, "compression")),
            new("unknown", 2, Outcome.Unsupported(Info, "compression type")),
            new("max", byte.MaxValue, Outcome.Unsupported(Info, "compression type")),
        });
        var zstd = Bytes.With(image, b =>
        {
            b[104] = 1;
            Bytes.Be64(b, 72, 8);
        });
        w.Add($"{v}-header-compression_type-zstd-over-deflate-data", "qcow2", "image.qcow2", zstd, Outcome.Corrupt(Read, "compressed cluster"));
    }

    // The backing file name's offset and size, in an overlay of a raw image with nothing of its own.
    private static void BackingFields(CorpusWriter w)
    {
        foreach (int version in new[] { 2, 3 })
        {
            var sample = new Qcow2Sample { Version = version, BackingName = "base.raw", BackingFormat = "raw" };
            var image = sample.Build();
            string v = $"qcow2-v{version}";
            var offsetCases = new FieldCase[]
            {
                new("zero", 0, Outcome.Valid),
                new("max", ulong.MaxValue, Outcome.Corrupt(Info, "backing_file_offset")),
                new("misaligned", (ulong)sample.BackingNameOffset + 1, Outcome.Corrupt(Info, "NUL"), "QEMU ends the name at the NUL byte and looks for 'ase.raw'"),
                new("overflow", (ulong)sample.ClusterSize - 4, Outcome.Corrupt(Info, "backing_file_offset")),
            };
            var sizeCases = new FieldCase[]
            {
                new("zero", 0, Outcome.Valid),
                new("max", uint.MaxValue, Outcome.Corrupt(Info, "backing_file_size")),
                new("short", 7, Outcome.Fails(Open, VDiskErrorKind.BackingMissing, "base.ra")),
                new("overflow", 1024, Outcome.Corrupt(Info, "backing_file_size")),
            };
            foreach (var (field, offset, width, cases) in new[] { ("backing_file_offset", 8, 8, offsetCases), ("backing_file_size", 16, 4, sizeCases) })
            {
                foreach (var c in cases)
                {
                    string name = $"{v}-header-{field}-{c.Label}";
                    string path = w.Add(name, "qcow2", "overlay.qcow2", Bytes.With(image, b => Put(b, offset, width, c.Value)), c.Outcome,
                        warns: c.Outcome.Kind == VDiskErrorKind.BackingMissing, qemuDiffers: c.QemuDiffers);
                    File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(path)!, "base.raw"), new byte[sample.Size]);
                }
            }
        }
    }

    private static void Field(CorpusWriter w, string v, byte[] image, string field, int offset, int width, FieldCase[] cases)
    {
        foreach (var c in cases)
            w.Add($"{v}-header-{field}-{c.Label}", "qcow2", "image.qcow2", Bytes.With(image, b => Put(b, offset, width, c.Value)), c.Outcome, qemuDiffers: c.QemuDiffers);
    }

    private static void Put(byte[] b, int offset, int width, ulong value)
    {
        switch (width)
        {
            case 8: Bytes.Be64(b, offset, value); break;
            case 4: Bytes.Be32(b, offset, (uint)value); break;
            default: b[offset] = (byte)value; break;
        }
    }
}
