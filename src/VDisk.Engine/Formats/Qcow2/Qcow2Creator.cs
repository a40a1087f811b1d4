// Creating a qcow2 image (qcow2.rst "Header", "Host cluster management"): header cluster, refcount
// table and blocks covering the initial metadata, an empty L1 table, and for an encrypted image the LUKS header
// and key material ("Full disk encryption header pointer"); then optional preallocation.
using System.Buffers.Binary;
using VDisk.Engine.Crypto;
using System.Numerics;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

internal static class Qcow2Creator
{
    /// <summary>Checks options the way qemu-img does, before any file is touched.</summary>
    public static void Validate(CreateOptions o, string path)
    {
        if (o.ClusterSize < 512 || o.ClusterSize > (2 << 20) || !BitOperations.IsPow2(o.ClusterSize))
            throw VDiskException.Invalid(path, $"Cluster size {o.ClusterSize} is invalid: it must be a power of two from 512 to 2097152 bytes.");
        if (o.RefcountBits is < 1 or > 64 || !BitOperations.IsPow2(o.RefcountBits))
            throw VDiskException.Invalid(path, $"Refcount width {o.RefcountBits} is invalid: it must be 1, 2, 4, 8, 16, 32 or 64 bits.");
        if (o.Compat is not ("0.10" or "1.1"))
            throw VDiskException.Invalid(path, $"Compat '{o.Compat}' is invalid: use '0.10' (qcow2 version 2) or '1.1' (version 3).");
        if (o.Compat == "0.10")
        {
            if (o.LazyRefcounts) throw VDiskException.Invalid(path, "Lazy refcounts need compat '1.1' (qcow2 version 3).");
            if (o.RefcountBits != 16) throw VDiskException.Invalid(path, "Refcount widths other than 16 bits need compat '1.1' (qcow2 version 3).");
            if (o.CompressionType != CompressionType.Zlib) throw VDiskException.Invalid(path, "Compression type zstd needs compat '1.1' (qcow2 version 3).");
        }
        if (o.Encryption != null && o.Passphrase is null)
            throw VDiskException.Invalid(path, $"{path}: an encrypted image needs a passphrase.");
        if (o.Encryption != null && o.Compat == "0.10")
            throw VDiskException.Invalid(path, $"{path}: LUKS encryption needs compat '1.1' (qcow2 version 3), as in QEMU.");
        long size = o.Size ?? 0;
        int clusterBits = BitOperations.Log2((uint)o.ClusterSize);
        if (Qcow2Header.RequiredL1Size(size, clusterBits) * 8 > Qcow2Header.MaxL1Bytes)
            throw VDiskException.Invalid(path, $"A {size}-byte disk is too large for {o.ClusterSize}-byte clusters (its L1 table would exceed {Qcow2Header.MaxL1Bytes >> 20} MiB); use larger clusters.");
    }

    /// <summary>Writes an empty image to <paramref name="storage"/> (which must be empty).</summary>
    public static void WriteEmpty(IStorage storage, CreateOptions o, long size, string? backingName, ImageFormat? backingFormat)
    {
        WriteEmpty(storage, o, size, backingName, backingFormat, out var cipher);
        cipher?.Dispose();
    }

    /// <summary>
    /// Writes an empty image to <paramref name="storage"/> (which must be empty). For an encrypted image,
    /// <paramref name="cipher"/> is its new data cipher (the caller owns it); otherwise null.
    /// </summary>
    public static void WriteEmpty(IStorage storage, CreateOptions o, long size, string? backingName, ImageFormat? backingFormat, out SectorCipher? cipher)
    {
        cipher = null;
        byte[]? luks = o.Encryption is null ? null : Luks.Format(o.Encryption, o.Passphrase!, out cipher);
        int clusterBits = BitOperations.Log2((uint)o.ClusterSize);
        long cs = o.ClusterSize;
        var header = new Qcow2Header
        {
            Version = o.Compat == "0.10" ? 2 : 3,
            ClusterBits = clusterBits,
            Size = size,
            RefcountOrder = BitOperations.Log2((uint)o.RefcountBits),
            CompressionType = o.CompressionType,
            CompatibleFeatures = o.LazyRefcounts ? Qcow2Features.LazyRefcounts : 0,
            BackingFile = backingName,
        };
        header.HeaderLength = header.Version == 2 ? Qcow2Header.V2Length : Qcow2Header.V3Length;
        header.L1Size = (int)Qcow2Header.RequiredL1Size(size, clusterBits);
        if (backingName != null && backingFormat is { } bf) header.BackingFormat = FormatProbe.Name(bf);
        if (header.Version == 3) header.Extensions.Add(Qcow2HeaderExtension.FeatureNameTable());

        // Layout: header, refcount table (T clusters), refcount blocks (B), L1 table (L), LUKS area (E); B and T cover all of it.
        long entriesPerBlock = cs * 8 / o.RefcountBits;
        long l1Clusters = (header.L1Size * 8L + cs - 1) / cs; // none for an empty disk: qemu-img writes l1_table_offset 0 then
        long luksClusters = luks is null ? 0 : (luks.Length + cs - 1) / cs;
        long tableClusters = 1, blocks = 1;
        while (true)
        {
            long total = 1 + tableClusters + blocks + l1Clusters + luksClusters;
            long needBlocks = (total + entriesPerBlock - 1) / entriesPerBlock;
            long needTable = Math.Max(1, (needBlocks * 8 + cs - 1) / cs);
            if (needBlocks == blocks && needTable == tableClusters) break;
            (blocks, tableClusters) = (needBlocks, needTable);
        }
        long clusters = 1 + tableClusters + blocks + l1Clusters + luksClusters;
        header.RefcountTableOffset = cs;
        header.RefcountTableClusters = (int)tableClusters;
        long firstBlock = 1 + tableClusters;
        header.L1TableOffset = l1Clusters == 0 ? 0 : (firstBlock + blocks) * cs;
        long luksOffset = (firstBlock + blocks + l1Clusters) * cs;
        if (luks != null)
        {
            header.CryptMethod = 2;
            var pointer = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(pointer, (ulong)luksOffset);
            BinaryPrimitives.WriteUInt64BigEndian(pointer.AsSpan(8), (ulong)luks.Length);
            header.Extensions.Insert(0, new Qcow2HeaderExtension(Qcow2HeaderExtension.FullDiskEncryptionType, pointer));
        }

        var block = new byte[cs];
        for (long b = 0; b < blocks; b++)
        {
            Array.Clear(block);
            for (long c = b * entriesPerBlock; c < Math.Min(clusters, (b + 1) * entriesPerBlock); c++)
                SetRefcountOne(block, c - b * entriesPerBlock, o.RefcountBits);
            storage.WriteAt((firstBlock + b) * cs, block);
        }
        var table = new byte[tableClusters * cs];
        for (long b = 0; b < blocks; b++)
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(b * 8)), (ulong)((firstBlock + b) * cs));
        storage.WriteAt(cs, table);
        storage.SetLength(clusters * cs); // the L1 table reads as zeroes
        if (luks != null) storage.WriteAt(luksOffset, luks);
        storage.WriteAt(0, header.Serialize());
    }

    private static void SetRefcountOne(byte[] block, long index, int bits)
    {
        if (bits >= 8) block[(index + 1) * (bits / 8) - 1] = 1; // big-endian: the low bit is in the entry's last byte
        else block[index * bits / 8] |= (byte)(1 << (int)(index * bits % 8));
    }
}
