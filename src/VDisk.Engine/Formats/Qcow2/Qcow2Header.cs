// The qcow2 header (QEMU docs/interop/qcow2.rst, "Header"): parse, validate every field against hard
// limits before anything is allocated, and serialise with header extensions and the backing file name.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>The fixed header fields of a qcow2 image, plus its extensions and backing file name.</summary>
public sealed class Qcow2Header
{
    /// <summary>"QFI\xfb".</summary>
    public const uint Magic = 0x514649fb;
    /// <summary>Length of a version 2 header.</summary>
    public const int V2Length = 72;
    /// <summary>Length of the version 3 header we write (with the compression type byte, padded to 8).</summary>
    public const int V3Length = 112;
    /// <summary>Smallest version 3 header.</summary>
    public const int V3MinLength = 104;
    /// <summary>QEMU's limit on the L1 table (QCOW_MAX_L1_SIZE).</summary>
    public const long MaxL1Bytes = 32L << 20;
    /// <summary>QEMU's limit on the refcount table (QCOW_MAX_REFTABLE_SIZE).</summary>
    public const long MaxRefcountTableBytes = 8L << 20;
    /// <summary>Longest backing file name (qcow2.rst: must not be longer than 1023 bytes).</summary>
    public const int MaxBackingNameBytes = 1023;
    /// <summary>QEMU's limit on internal snapshots (QCOW_MAX_SNAPSHOTS).</summary>
    public const int MaxSnapshots = 65536;
    /// <summary>Host offsets must fit in the 56-bit offset field of table entries.</summary>
    public const long MaxHostOffset = 1L << 56;

    // Byte offsets of the fields (qcow2.rst "Header").
    internal const int VersionOffset = 4, BackingFileOffsetOffset = 8, BackingFileSizeOffset = 16, ClusterBitsOffset = 20,
        SizeOffset = 24, CryptMethodOffset = 32, L1SizeOffset = 36, L1TableOffsetOffset = 40, RefcountTableOffsetOffset = 48,
        RefcountTableClustersOffset = 56, SnapshotCountOffset = 60, SnapshotsOffsetOffset = 64, IncompatibleOffset = 72,
        CompatibleOffset = 80, AutoclearOffset = 88, RefcountOrderOffset = 96, HeaderLengthOffset = 100, CompressionTypeOffset = 104;

    public int Version { get; set; } = 3;
    public int ClusterBits { get; set; } = 16;
    public long Size { get; set; }
    public uint CryptMethod { get; set; }
    public int L1Size { get; set; }
    public long L1TableOffset { get; set; }
    public long RefcountTableOffset { get; set; }
    public int RefcountTableClusters { get; set; }
    public int SnapshotCount { get; set; }
    public long SnapshotsOffset { get; set; }
    public ulong IncompatibleFeatures { get; set; }
    public ulong CompatibleFeatures { get; set; }
    public ulong AutoclearFeatures { get; set; }
    public int RefcountOrder { get; set; } = 4;
    public int HeaderLength { get; set; } = V3Length;
    public CompressionType CompressionType { get; set; } = CompressionType.Zlib;
    public string? BackingFile { get; set; }
    /// <summary>Header extensions in file order (backing format, feature table, and any we do not interpret).</summary>
    public List<Qcow2HeaderExtension> Extensions { get; private set; } = new();
    /// <summary>
    /// Version 3 header fields past the ones this engine knows (bytes 112 to header_length), kept byte for byte so a
    /// rewritten header loses nothing a newer QEMU wrote there.
    /// </summary>
    public byte[] UnknownFields { get; set; } = Array.Empty<byte>();

    public int ClusterSize => 1 << ClusterBits;
    public int RefcountBits => 1 << RefcountOrder;
    /// <summary>"0.10" for version 2, "1.1" for version 3, as qemu-img prints it.</summary>
    public string Compat => Version == 2 ? "0.10" : "1.1";

    public bool IsDirty => (IncompatibleFeatures & Qcow2Features.Dirty) != 0;
    public bool IsCorrupt => (IncompatibleFeatures & Qcow2Features.Corrupt) != 0;
    public bool LazyRefcounts => (CompatibleFeatures & Qcow2Features.LazyRefcounts) != 0;

    /// <summary>The backing format recorded in the backing-format extension.</summary>
    public string? BackingFormat
    {
        get => Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.BackingFormatType)?.Text;
        set
        {
            Extensions.RemoveAll(e => e.Type == Qcow2HeaderExtension.BackingFormatType);
            if (value != null) Extensions.Insert(0, Qcow2HeaderExtension.FromText(Qcow2HeaderExtension.BackingFormatType, value));
        }
    }

    /// <summary>Parses and validates the header in <paramref name="cluster0"/> (at least the first 4 KiB, or the whole first cluster).</summary>
    public static Qcow2Header Parse(ReadOnlySpan<byte> cluster0, string path)
    {
        if (cluster0.Length < V2Length || BinaryPrimitives.ReadUInt32BigEndian(cluster0) != Magic)
            throw new VDiskException(VDiskErrorKind.NotAnImage, path, $"{path}: not a qcow2 image (bad magic).");
        var h = new Qcow2Header
        {
            Version = (int)U32(cluster0, VersionOffset),
        };
        if (h.Version is not (2 or 3))
            throw VDiskException.Unsupported(path, $"qcow2 version {h.Version} is not supported (only 2 and 3).");
        ulong backingOffset = U64(cluster0, BackingFileOffsetOffset);
        uint backingSize = U32(cluster0, BackingFileSizeOffset);
        uint clusterBits = U32(cluster0, ClusterBitsOffset);
        if (clusterBits is < 9 or > 21)
            throw VDiskException.Corrupt(path, $"qcow2 header field cluster_bits is {clusterBits}; it must be 9 to 21 (512 B to 2 MiB clusters).");
        h.ClusterBits = (int)clusterBits;
        int cs = h.ClusterSize;
        ulong size = U64(cluster0, SizeOffset);
        if (size > long.MaxValue / 2)
            throw VDiskException.Corrupt(path, $"qcow2 header field size is {size}, beyond the largest supported disk.");
        h.Size = (long)size / 512 * 512; // QEMU keeps whole sectors (total_sectors = size / 512): 64 MiB + 1 is 64 MiB
        h.CryptMethod = U32(cluster0, CryptMethodOffset);
        if (h.CryptMethod > 2)
            throw VDiskException.Corrupt(path, $"qcow2 header field crypt_method is {h.CryptMethod}; it must be 0, 1 or 2.");

        uint l1Size = U32(cluster0, L1SizeOffset);
        if (l1Size > MaxL1Bytes / 8)
            throw VDiskException.Corrupt(path, $"qcow2 header field l1_size is {l1Size}; the L1 table may hold at most {MaxL1Bytes / 8} entries.");
        h.L1Size = (int)l1Size;
        long needL1 = RequiredL1Size((long)size, h.ClusterBits);
        if (h.L1Size < needL1)
            throw VDiskException.Corrupt(path, $"qcow2 header field l1_size is {l1Size}, too small for a {size}-byte disk (needs {needL1}).");
        h.L1TableOffset = CheckTableOffset(U64(cluster0, L1TableOffsetOffset), (long)l1Size * 8, cs, "l1_table_offset", path, h.L1Size == 0);

        h.RefcountTableClusters = (int)Math.Min(U32(cluster0, RefcountTableClustersOffset), int.MaxValue);
        if ((long)h.RefcountTableClusters * cs > MaxRefcountTableBytes)
            throw VDiskException.Corrupt(path, $"qcow2 header field refcount_table_clusters is {h.RefcountTableClusters}; the refcount table may be at most {MaxRefcountTableBytes >> 20} MiB.");
        if (h.RefcountTableClusters == 0)
            throw VDiskException.Corrupt(path, "qcow2 header field refcount_table_clusters is 0.");
        h.RefcountTableOffset = CheckTableOffset(U64(cluster0, RefcountTableOffsetOffset), (long)h.RefcountTableClusters * cs, cs, "refcount_table_offset", path, false);

        uint snapshotCount = U32(cluster0, SnapshotCountOffset);
        if (snapshotCount > MaxSnapshots)
            throw VDiskException.Corrupt(path, $"qcow2 header field nb_snapshots is {snapshotCount}; at most {MaxSnapshots} are allowed.");
        h.SnapshotCount = (int)snapshotCount;
        h.SnapshotsOffset = CheckTableOffset(U64(cluster0, SnapshotsOffsetOffset), 0, cs, "snapshots_offset", path, snapshotCount == 0);

        if (h.Version == 2)
        {
            h.HeaderLength = V2Length;
            h.RefcountOrder = 4;
        }
        else
        {
            if (cluster0.Length < V3MinLength)
                throw VDiskException.Corrupt(path, "qcow2 version 3 header is truncated.");
            h.IncompatibleFeatures = U64(cluster0, IncompatibleOffset);
            h.CompatibleFeatures = U64(cluster0, CompatibleOffset);
            h.AutoclearFeatures = U64(cluster0, AutoclearOffset);
            uint order = U32(cluster0, RefcountOrderOffset);
            if (order > 6)
                throw VDiskException.Corrupt(path, $"qcow2 header field refcount_order is {order}; it must be 0 to 6 (1 to 64-bit refcounts).");
            h.RefcountOrder = (int)order;
            uint headerLength = U32(cluster0, HeaderLengthOffset);
            if (headerLength < V3MinLength || headerLength % 8 != 0 || headerLength > Math.Min(cs, cluster0.Length))
                throw VDiskException.Corrupt(path, $"qcow2 header field header_length is {headerLength}; it must be a multiple of 8 from {V3MinLength} to the cluster size.");
            h.HeaderLength = (int)headerLength;
            if (headerLength > V3Length) h.UnknownFields = cluster0[V3Length..(int)headerLength].ToArray();
            byte compression = headerLength > CompressionTypeOffset ? cluster0[CompressionTypeOffset] : (byte)0;
            bool compressionBit = (h.IncompatibleFeatures & Qcow2Features.CompressionType) != 0;
            if (compression > 1)
                throw VDiskException.Unsupported(path, $"qcow2 compression type {compression} is not supported (0 = zlib, 1 = zstd).");
            if (compression != 0 && !compressionBit)
                throw VDiskException.Corrupt(path, $"qcow2 compression_type is {compression} but the compression-type incompatible feature bit is not set.");
            if (compression == 0 && compressionBit && (h.IncompatibleFeatures & ~Qcow2Features.KnownIncompatible) == 0)
                throw VDiskException.Corrupt(path, "qcow2 compression-type incompatible feature bit is set but compression_type is 0 (zlib); QEMU refuses such images.");
            h.CompressionType = compression == 1 ? CompressionType.Zstd : CompressionType.Zlib;
        }

        if (backingOffset != 0 && backingSize != 0) // an empty name means no backing file, as in QEMU
        {
            if (backingSize > MaxBackingNameBytes)
                throw VDiskException.Corrupt(path, $"qcow2 header field backing_file_size is {backingSize}; the name may be at most {MaxBackingNameBytes} bytes.");
            ulong headerArea = (ulong)Math.Min(cs, cluster0.Length);
            if (backingOffset > headerArea || backingSize > headerArea - backingOffset) // no sum: a huge offset would wrap around
                throw VDiskException.Corrupt(path, $"qcow2 header field backing_file_offset is {backingOffset}; the backing file name must lie within the first cluster.");
            h.BackingFile = Encoding.UTF8.GetString(cluster0.Slice((int)backingOffset, (int)backingSize));
        }

        int extensionsEnd = (int)Math.Min(backingOffset != 0 ? backingOffset : ulong.MaxValue, (ulong)Math.Min(cs, cluster0.Length));
        Qcow2HeaderExtension.ParseAll(cluster0[..extensionsEnd], h.HeaderLength, h.Extensions, path);
        return h;
    }

    /// <summary>Entries an L1 table needs for a disk of <paramref name="size"/> bytes.</summary>
    public static long RequiredL1Size(long size, int clusterBits)
    {
        int l2Bits = clusterBits - 3;
        long bytesPerL1Entry = 1L << (clusterBits + l2Bits);
        return (size + bytesPerL1Entry - 1) / bytesPerL1Entry;
    }

    /// <summary>A deep copy (the header updater changes a copy and adopts it once it is written).</summary>
    public Qcow2Header Clone()
    {
        var copy = (Qcow2Header)MemberwiseClone();
        copy.Extensions = Extensions.ToList();
        return copy;
    }

    /// <summary>
    /// Serialises the header, its extensions and the backing file name into the first cluster. With
    /// <paramref name="mayDropFeatureTable"/> (new images) the optional feature name table is left out when space is
    /// short, as qemu-img does; otherwise (rewriting an existing header) nothing is ever dropped and a header that
    /// does not fit is refused.
    /// </summary>
    public byte[] Serialize(bool mayDropFeatureTable = true)
    {
        var buffer = new byte[ClusterSize];
        var span = buffer.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(span, Magic);
        PutU32(span, VersionOffset, (uint)Version);
        PutU32(span, ClusterBitsOffset, (uint)ClusterBits);
        PutU64(span, SizeOffset, (ulong)Size);
        PutU32(span, CryptMethodOffset, CryptMethod);
        PutU32(span, L1SizeOffset, (uint)L1Size);
        PutU64(span, L1TableOffsetOffset, (ulong)L1TableOffset);
        PutU64(span, RefcountTableOffsetOffset, (ulong)RefcountTableOffset);
        PutU32(span, RefcountTableClustersOffset, (uint)RefcountTableClusters);
        PutU32(span, SnapshotCountOffset, (uint)SnapshotCount);
        PutU64(span, SnapshotsOffsetOffset, (ulong)SnapshotsOffset);
        int pos = V2Length;
        if (Version == 3)
        {
            if (CompressionType != CompressionType.Zlib) IncompatibleFeatures |= Qcow2Features.CompressionType;
            PutU64(span, IncompatibleOffset, IncompatibleFeatures);
            PutU64(span, CompatibleOffset, CompatibleFeatures);
            PutU64(span, AutoclearOffset, AutoclearFeatures);
            PutU32(span, RefcountOrderOffset, (uint)RefcountOrder);
            HeaderLength = V3Length + UnknownFields.Length;
            PutU32(span, HeaderLengthOffset, (uint)HeaderLength);
            span[CompressionTypeOffset] = (byte)(CompressionType == CompressionType.Zstd ? 1 : 0);
            UnknownFields.CopyTo(span[V3Length..]);
            pos = HeaderLength;
        }
        int backingLength = BackingFile is null ? 0 : Encoding.UTF8.GetByteCount(BackingFile);
        if (backingLength > MaxBackingNameBytes)
            throw VDiskException.Invalid(BackingFile, $"backing file name '{BackingFile}' is too long ({backingLength} bytes; at most {MaxBackingNameBytes}).");
        if (pos + Qcow2HeaderExtension.SpaceNeeded(Extensions) + backingLength > ClusterSize)
        {
            if (!mayDropFeatureTable)
                throw VDiskException.Invalid(BackingFile, $"the qcow2 header, its {Extensions.Count} extension(s) and the backing file name " +
                    $"({backingLength} bytes) do not fit in the first cluster ({ClusterSize} bytes); nothing was changed.");
            Extensions.RemoveAll(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType);
        }
        pos = Qcow2HeaderExtension.WriteAll(span, pos, Extensions);
        if (BackingFile != null)
        {
            if (pos + backingLength > ClusterSize)
                throw VDiskException.Invalid(BackingFile, $"backing file name '{BackingFile}' is too long ({backingLength} bytes; at most {ClusterSize - pos} fit).");
            Encoding.UTF8.GetBytes(BackingFile, span[pos..]);
            PutU64(span, BackingFileOffsetOffset, (ulong)pos);
            PutU32(span, BackingFileSizeOffset, (uint)backingLength);
        }
        return buffer;
    }

    private static long CheckTableOffset(ulong offset, long length, int clusterSize, string field, string path, bool mayBeZero)
    {
        if (offset == 0 && mayBeZero) return 0;
        if (offset == 0 || offset % (ulong)clusterSize != 0)
            throw VDiskException.Corrupt(path, $"qcow2 header field {field} is {offset}; it must be a non-zero multiple of the cluster size ({clusterSize}).");
        if (offset >= MaxHostOffset || offset + (ulong)length > MaxHostOffset)
            throw VDiskException.Corrupt(path, $"qcow2 header field {field} is {offset}, beyond the largest host offset.");
        return (long)offset;
    }

    internal static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32BigEndian(s[offset..]);
    internal static ulong U64(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt64BigEndian(s[offset..]);
    internal static void PutU32(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32BigEndian(s[offset..], value);
    internal static void PutU64(Span<byte> s, int offset, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(s[offset..], value);
}
