// Corpus: qcow2 metadata beyond the header (qcow2.rst "Cluster mapping", "Host cluster management",
// "Compressed Clusters Descriptor", "Snapshots", "Header extensions"): L1, L2 and refcount entries pointing past
// the end of the file, into metadata, misaligned or with reserved bits; compressed cluster descriptors and
// payloads; snapshot table entries (read when a snapshot is converted); header extensions; and the file
// truncated at every structure boundary. Reads past the end of the file give zeroes, as in QEMU.
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;
using static VDisk.Engine.Tests.Corpus.Qcow2Sample;

namespace VDisk.Engine.Tests.Corpus;

internal static class Qcow2TableCases
{
    public static void Write(CorpusWriter w)
    {
        foreach (int version in new[] { 2, 3 })
        {
            var s = new Qcow2Sample { Version = version };
            var image = s.Build();
            string v = $"qcow2-v{version}";
            long l1 = s.Offset(L1Cluster), l2 = s.Offset(L2Cluster);
            void Case(string name, Action<byte[]> change, Outcome outcome, string? qemuDiffers = null) =>
                w.Add($"{v}-{name}", "qcow2", "image.qcow2", Bytes.With(image, change), outcome, qemuDiffers: qemuDiffers);

            Case("l1-entry-past-eof", b => Bytes.Be64(b, l1, (1UL << 30) | Copied), Outcome.Valid);
            Case("l1-entry-largest-offset", b => Bytes.Be64(b, l1, 0x00ff_ffff_ffff_f000UL), Outcome.Valid);
            Case("l1-entry-misaligned", b => Bytes.Be64(b, l1, (ulong)(l2 + 512) | Copied), Outcome.Corrupt(Map, "L1 table entry 0"));
            Case("l1-entry-reserved-bits", b => Bytes.Be64(b, l1, (ulong)l2 | Copied | 0x7f00_0000_0000_01feUL), Outcome.Valid);
            Case("l1-entry-into-refcount-block", b => Bytes.Be64(b, l1, (ulong)s.Offset(RefBlockCluster)), version == 2 ? Outcome.Corrupt(Map, "zero") : Outcome.Valid);
            Case("l1-entry-into-l1", b => Bytes.Be64(b, l1, (ulong)l1 | Copied), Outcome.Valid);
            Case("l1-entry-into-header", b => Bytes.Be64(b, l1, Copied | 512), Outcome.Corrupt(Map, "L1 table entry 0"));

            Case("l2-entry-past-eof", b => Bytes.Be64(b, l2, (1UL << 30) | Copied), Outcome.Valid);
            Case("l2-entry-largest-offset", b => Bytes.Be64(b, l2, 0x00ff_ffff_ffff_f000UL), Outcome.Valid);
            Case("l2-entry-misaligned", b => Bytes.Be64(b, l2, (ulong)s.Offset(Data1Cluster) + 512), Outcome.Corrupt(Map, "unaligned"));
            Case("l2-entry-reserved-bits", b => Bytes.Be64(b, l2, (ulong)s.Offset(Data1Cluster) | Copied | 0x3f00_0000_0000_01feUL), Outcome.Valid);
            Case("l2-entry-into-header", b => Bytes.Be64(b, l2, Copied | (ulong)s.Offset(0) | 0x200), Outcome.Corrupt(Map, "unaligned"));
            Case("l2-entry-into-refcount-table", b => Bytes.Be64(b, l2, (ulong)s.Offset(RefTableCluster)), Outcome.Valid);
            Case("l2-entry-into-l2", b => Bytes.Be64(b, l2, (ulong)l2), Outcome.Valid);
            Case("l2-entry-all-ones", b => Bytes.Be64(b, l2, ulong.MaxValue), Outcome.Corrupt(Read, "compressed"));
            Case("l2-zero-flag-on-every-entry", b => { for (int i = 0; i < 3; i++) b[l2 + i * 8 + 7] |= 1; }, version == 2 ? Outcome.Corrupt(Map, "zero") : Outcome.Valid);
            Case("l2-table-all-copied-bits", b => { for (int i = 4; i < 512; i++) b[l2 + i * 8] = 0x80; }, Outcome.Valid);

            long compressedEntry = l2 + 24, payload = s.Offset(CompressedCluster);
            int payloadLength = Deflate(s.CompressedPlain()).Length;
            Case("compressed-past-eof", b => Bytes.Be64(b, compressedEntry, s.CompressedEntry(1L << 30, 100)), Outcome.Corrupt(Read, "compressed"));
            Case("compressed-most-sectors", b => Bytes.Be64(b, compressedEntry, s.CompressedEntry(payload, payloadLength, 15)), Outcome.Valid);
            Case("compressed-into-header", b => Bytes.Be64(b, compressedEntry, s.CompressedEntry(0, 200)), Outcome.Corrupt(Read, "compressed"));
            Case("compressed-offset-largest", b => Bytes.Be64(b, compressedEntry, s.CompressedEntry((1L << (62 - (s.ClusterBits - 8))) - 1, 1)), Outcome.Corrupt(Read, "compressed"));
            Case("compressed-payload-garbage", b => Array.Fill(b, (byte)0xff, (int)payload, payloadLength), Outcome.Corrupt(Read, "compressed"));
            Case("compressed-payload-zero", b => Array.Clear(b, (int)payload, payloadLength), Outcome.Corrupt(Read, "compressed"));
            Case("compressed-payload-short", b => Deflate(new byte[100]).CopyTo(b, payload), Outcome.Corrupt(Read, "inflates"));
            Case("compressed-payload-long", b =>
            {
                var big = Deflate(new byte[3 * s.ClusterSize]);
                Array.Clear(b, (int)payload, payloadLength);
                big.CopyTo(b, payload);
                Bytes.Be64(b, compressedEntry, s.CompressedEntry(payload, big.Length));
            }, Outcome.Valid);
            Case("compressed-with-copied-bit", b => b[compressedEntry] |= 0x80, Outcome.Valid);
            Case("compressed-payload-truncated", b => Array.Clear(b, (int)payload + payloadLength / 2, payloadLength - payloadLength / 2), Outcome.Corrupt(Read, "compressed"));

            long refTable = s.Offset(RefTableCluster), refBlock = s.Offset(RefBlockCluster);
            Case("refcount-table-entry-past-eof", b => Bytes.Be64(b, refTable, 1UL << 30), Outcome.Valid);
            Case("refcount-table-entry-misaligned", b => Bytes.Be64(b, refTable, (ulong)refBlock + 8), Outcome.Valid);
            Case("refcount-table-entry-into-header", b => Bytes.Be64(b, refTable, 0x200), Outcome.Valid);
            Case("refcount-table-entry-all-ones", b => Bytes.Be64(b, refTable, ulong.MaxValue), Outcome.Valid);
            Case("refcount-block-all-zero", b => Array.Clear(b, (int)refBlock, s.ClusterSize), Outcome.Valid);
            Case("refcount-block-all-max", b => Array.Fill(b, (byte)0xff, (int)refBlock, s.ClusterSize), Outcome.Valid);

            Truncations(w, v, s, image);
            Snapshots(w, v, new Qcow2Sample { Version = version, WithSnapshot = true });
        }
        Extensions(w);
    }

    // The file cut at every structure boundary and inside each structure; what is missing reads as zeroes.
    private static void Truncations(CorpusWriter w, string v, Qcow2Sample s, byte[] image)
    {
        long payloadLength = Deflate(s.CompressedPlain()).Length;
        var cuts = new (string Label, long Length, Outcome Outcome, string? QemuDiffers)[]
        {
            ("magic", 4, Outcome.Unsupported(Info, "version"), "QEMU probes a qcow2 magic with version 0 (what is missing reads as zeroes) as raw"),
            ("v2-header", 72, s.Version == 2 ? Outcome.Valid : Outcome.Corrupt(Info, "header_length"), null),
            ("v3-header", 104, Outcome.Valid, null),
            ("header-cluster", s.Offset(RefTableCluster), Outcome.Valid, null),
            ("in-refcount-table", s.Offset(RefTableCluster) + 4, Outcome.Valid, null),
            ("refcount-table", s.Offset(RefBlockCluster), Outcome.Valid, null),
            ("refcount-block", s.Offset(L1Cluster), Outcome.Valid, null),
            ("in-l1-entry", s.Offset(L1Cluster) + 4, Outcome.Valid, null),
            ("l1", s.Offset(L2Cluster), Outcome.Valid, null),
            ("in-l2", s.Offset(L2Cluster) + 8, Outcome.Valid, null),
            ("l2", s.Offset(Data1Cluster), Outcome.Corrupt(Read, "compressed"), null),
            ("in-data", s.Offset(Data1Cluster) + 100, Outcome.Corrupt(Read, "compressed"), null),
            ("data", s.Offset(CompressedCluster), Outcome.Corrupt(Read, "compressed"), null),
            ("in-compressed", s.Offset(CompressedCluster) + payloadLength / 2, Outcome.Corrupt(Read, "compressed"), null),
        };
        foreach (var (label, length, outcome, qemuDiffers) in cuts)
            w.Add($"{v}-truncated-{label}", "qcow2", "image.qcow2", Bytes.Truncate(image, length), outcome, qemuDiffers: qemuDiffers);
    }

    // Snapshot table entries, read when the snapshot is converted (Convert-VDisk -Snapshot 1); nothing else reads them.
    private static void Snapshots(CorpusWriter w, string v, Qcow2Sample s)
    {
        var image = s.Build();
        long entry = s.Offset(SnapshotTableCluster);
        void Case(string name, Action<byte[]> change, VDiskErrorKind? snapshotError, string? qemuDiffers = null)
        {
            w.Add($"{v}-snapshot-{name}", "qcow2", "image.qcow2", Bytes.With(image, change), Outcome.Valid, qemuDiffers: qemuDiffers);
            w.Cases[^1] = w.Cases[^1] with { Snapshot = "1", SnapshotError = snapshotError };
        }
        const string QemuReadsTable = "QEMU reads the snapshot table whenever it opens the image; VDisk only when a snapshot is used";
        Case("valid", _ => { }, null);
        Case("l1-offset-misaligned", b => Bytes.Be64(b, entry, (ulong)s.Offset(SnapshotL1Cluster) + 8), VDiskErrorKind.Corrupt);
        Case("l1-offset-past-eof", b => Bytes.Be64(b, entry, 1UL << 30), null);
        Case("l1-size-huge", b => Bytes.Be32(b, entry + 8, uint.MaxValue), VDiskErrorKind.Corrupt);
        Case("l1-size-zero", b => Bytes.Be32(b, entry + 8, 0), VDiskErrorKind.Corrupt, QemuReadsTable);
        Case("id-and-name-longest", b => { Bytes.Be32(b, entry + 12, uint.MaxValue); }, VDiskErrorKind.SnapshotNotFound);
        Case("extra-data-too-large", b => Bytes.Be32(b, entry + 36, 1025), VDiskErrorKind.Corrupt, QemuReadsTable);
        Case("extra-data-none", b => Bytes.Be32(b, entry + 36, 0), VDiskErrorKind.SnapshotNotFound);
        Case("disk-size-huge", b => Bytes.Be64(b, entry + 48, 1UL << 62), VDiskErrorKind.Corrupt, QemuReadsTable);
        Case("count-beyond-entries", b => Bytes.Be32(b, 60, 2), VDiskErrorKind.Corrupt, QemuReadsTable);
        Case("table-past-eof", b => Bytes.Be64(b, 64, 1UL << 30), VDiskErrorKind.Corrupt);
        Case("count-largest", b => Bytes.Be32(b, 60, 65536), VDiskErrorKind.Corrupt, QemuReadsTable);
        LargestTable(w, v, s);
    }

    // The largest snapshot table QEMU reads (64 MiB): 500 entries with the longest id and name, all valid, in a sparse file.
    private static void LargestTable(CorpusWriter w, string v, Qcow2Sample s)
    {
        const int Entries = 500, EntryBytes = 40 + 16 + 2 * 65535 + 2; // padded to 8
        var image = s.Build();
        var table = new byte[s.Offset(SnapshotTableCluster) + (long)Entries * EntryBytes];
        image.AsSpan(0, (int)s.Offset(SnapshotTableCluster)).CopyTo(table);
        for (int i = 0; i < Entries; i++)
        {
            long at = s.Offset(SnapshotTableCluster) + (long)i * EntryBytes;
            image.AsSpan((int)s.Offset(SnapshotTableCluster), 56).CopyTo(table.AsSpan((int)at));
            Bytes.Be32(table, at + 12, uint.MaxValue); // id_str_size and name_size: 65535 each
            table[at + 56] = (byte)'x';
        }
        Bytes.Be32(table, 60, Entries);
        var withL1 = new byte[(table.Length + s.ClusterSize - 1) / s.ClusterSize * s.ClusterSize + s.ClusterSize];
        table.CopyTo(withL1, 0);
        long l1 = withL1.Length - s.ClusterSize;
        Bytes.Be64(withL1, l1, (ulong)s.Offset(L2Cluster));
        for (int i = 0; i < Entries; i++) Bytes.Be64(withL1, s.Offset(SnapshotTableCluster) + (long)i * EntryBytes, (ulong)l1);
        w.Add($"{v}-snapshot-table-largest", "qcow2", "image.qcow2", withL1, Outcome.Valid);
        w.Cases[^1] = w.Cases[^1] with { Snapshot = "1", SnapshotError = VDiskErrorKind.SnapshotNotFound };
    }

    private static void Extensions(CorpusWriter w)
    {
        var overlay = new Qcow2Sample { BackingName = "base.raw", BackingFormat = "raw" };
        void Case(string name, Qcow2Sample s, Action<byte[]> change, Outcome outcome, string? qemuDiffers = null, bool warns = false, string? errorFile = null)
        {
            string path = w.Add($"qcow2-v3-extension-{name}", "qcow2", "image.qcow2", Bytes.With(s.Build(), change), outcome, warns, errorFile, qemuDiffers);
            File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(path)!, "base.raw"), new byte[s.Size]);
        }
        var plain = new Qcow2Sample();
        Case("unknown-type", new Qcow2Sample { Extensions = new[] { (0x12345678u, new byte[20]) } }, _ => { }, Outcome.Valid);
        Case("many-unknown", new Qcow2Sample { Extensions = Enumerable.Range(1, 400).Select(i => ((uint)i, new byte[1])).ToArray() }, _ => { }, Outcome.Valid);
        Case("length-past-cluster", plain, b => { Bytes.Be32(b, 112, 0x12345678); Bytes.Be32(b, 116, 8000); }, Outcome.Corrupt(Info, "extension"));
        Case("length-max", plain, b => { Bytes.Be32(b, 112, 0x12345678); Bytes.Be32(b, 116, uint.MaxValue); }, Outcome.Corrupt(Info, "extension"));
        Case("feature-table-odd-length", new Qcow2Sample { Extensions = new[] { (0x6803f857u, new byte[50]) } }, _ => { }, Outcome.Valid);
        Case("backing-format-unknown", new Qcow2Sample { BackingName = "base.raw", BackingFormat = "qcow" }, _ => { },
            Outcome.Unsupported(Open, "backing format"), warns: true);
        Case("backing-format-qcow2-for-raw", new Qcow2Sample { BackingName = "base.raw", BackingFormat = "qcow2" }, _ => { },
            Outcome.Fails(Open, VDiskErrorKind.NotAnImage, "magic"), warns: true, errorFile: "base.raw");
        Case("backing-format-empty", new Qcow2Sample { BackingName = "base.raw", BackingFormat = "" }, _ => { }, Outcome.Valid);
        Case("backing-format-raw", overlay, _ => { }, Outcome.Valid);
        Case("encryption-header-without-method", new Qcow2Sample { Extensions = new[] { (0x0537be77u, new byte[16]) } }, _ => { },
            Outcome.Corrupt(Info, "encryption header extension")); // QEMU: "Crypt header specified for non-LUKS encrypted image"
        Case("external-data-file-without-bit", new Qcow2Sample { Extensions = new[] { (0x44415441u, Bytes.Ascii("data.raw")) } }, _ => { }, Outcome.Valid);
        Case("bitmaps-garbage", new Qcow2Sample { Extensions = new[] { (0x23852875u, Enumerable.Repeat((byte)0xff, 24).ToArray()) } },
            b => Bytes.Be64(b, 88, 1), Outcome.Valid, "QEMU validates the bitmaps extension when the bitmaps autoclear bit is set; VDisk does not read bitmaps (and clears the bit when it writes)");
    }
}
