// A small, valid qcow2 image built byte by byte (qcow2.rst "Header", "Host cluster management", "Cluster
// mapping", "Compressed Clusters Descriptor", "Snapshots"), with a fixed layout the corpus damages piece by
// piece: cluster 0 header (extensions, backing name), 1 refcount table, 2 refcount block, 3 L1 table, 4 L2
// table, 5 and 6 data, 7 a compressed cluster, and with a snapshot 8 the snapshot table and 9 its L1 table.
// Guest clusters: 0 and 1 data, 2 a zero cluster (version 3; unallocated in version 2), 3 compressed.
using System.IO.Compression;
using System.Text;

namespace VDisk.Engine.Tests.Corpus;

/// <summary>Builds the corpus's base qcow2 images.</summary>
internal sealed class Qcow2Sample
{
    public const int RefTableCluster = 1, RefBlockCluster = 2, L1Cluster = 3, L2Cluster = 4, Data1Cluster = 5, Data2Cluster = 6,
        CompressedCluster = 7, SnapshotTableCluster = 8, SnapshotL1Cluster = 9;
    public const ulong Copied = 1UL << 63, CompressedFlag = 1UL << 62, ZeroFlag = 1;
    public const uint BackingFormatExtension = 0xe2792aca;

    public int Version { get; init; } = 3;
    public int ClusterBits { get; init; } = 12;
    public long Size { get; init; } = 1 << 20;
    public string? BackingName { get; init; }
    public string? BackingFormat { get; init; }
    public bool WithSnapshot { get; init; }
    /// <summary>Extra header extensions (type, data) written after the backing format one.</summary>
    public IReadOnlyList<(uint Type, byte[] Data)> Extensions { get; init; } = Array.Empty<(uint, byte[])>();

    public int ClusterSize => 1 << ClusterBits;
    public int HeaderLength => Version == 2 ? 72 : 112;
    public long Offset(int cluster) => (long)cluster << ClusterBits;
    /// <summary>Byte offset of the backing file name in cluster 0 (valid after <see cref="Build"/>).</summary>
    public int BackingNameOffset { get; private set; }

    /// <summary>The guest content the image holds.</summary>
    public byte[] GuestBytes()
    {
        var guest = new byte[Size];
        DataCluster(1).CopyTo(guest, 0);
        DataCluster(2).CopyTo(guest, ClusterSize);
        CompressedPlain().CopyTo(guest, 3L * ClusterSize);
        return guest;
    }

    public byte[] Build()
    {
        int clusters = WithSnapshot ? 10 : 8;
        var image = new byte[Offset(clusters)];
        WriteHeader(image);
        Bytes.Be64(image, Offset(RefTableCluster), (ulong)Offset(RefBlockCluster));
        for (int c = 0; c < clusters; c++)
        {
            bool shared = WithSnapshot && c is L2Cluster or Data1Cluster or Data2Cluster or CompressedCluster;
            image[Offset(RefBlockCluster) + c * 2 + 1] = (byte)(shared ? 2 : 1);
        }
        ulong copied = WithSnapshot ? 0 : Copied;
        Bytes.Be64(image, Offset(L1Cluster), (ulong)Offset(L2Cluster) | copied);
        long l2 = Offset(L2Cluster);
        Bytes.Be64(image, l2, (ulong)Offset(Data1Cluster) | copied);
        Bytes.Be64(image, l2 + 8, (ulong)Offset(Data2Cluster) | copied);
        if (Version == 3) Bytes.Be64(image, l2 + 16, ZeroFlag);
        byte[] payload = Deflate(CompressedPlain());
        payload.CopyTo(image, Offset(CompressedCluster));
        Bytes.Be64(image, l2 + 24, CompressedEntry(Offset(CompressedCluster), payload.Length));
        DataCluster(1).CopyTo(image, Offset(Data1Cluster));
        DataCluster(2).CopyTo(image, Offset(Data2Cluster));
        if (WithSnapshot)
        {
            Bytes.Be64(image, Offset(SnapshotL1Cluster), (ulong)Offset(L2Cluster));
            WriteSnapshotEntry(image, Offset(SnapshotTableCluster));
        }
        return image;
    }

    /// <summary>The L2 entry of a compressed cluster of <paramref name="length"/> bytes at <paramref name="host"/>.</summary>
    public ulong CompressedEntry(long host, int length, ulong extraSectorsOverride = ulong.MaxValue)
    {
        int offsetBits = 62 - (ClusterBits - 8);
        ulong extra = extraSectorsOverride != ulong.MaxValue ? extraSectorsOverride : (ulong)((host + length - 1) / 512 - host / 512);
        return CompressedFlag | (extra << offsetBits) | (ulong)host;
    }

    public byte[] DataCluster(int which)
    {
        var data = new byte[ClusterSize];
        for (int i = 0; i < data.Length; i++) data[i] = which == 1 ? (byte)0x11 : (byte)(i * 7);
        return data;
    }

    public byte[] CompressedPlain()
    {
        var text = Encoding.ASCII.GetBytes("a compressed qcow2 cluster of the malformed-image corpus. ");
        var data = new byte[ClusterSize];
        for (int i = 0; i < data.Length; i++) data[i] = text[i % text.Length];
        return data;
    }

    public static byte[] Deflate(byte[] plain)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true)) deflate.Write(plain);
        return output.ToArray();
    }

    private void WriteHeader(byte[] image)
    {
        Bytes.Be32(image, 0, 0x514649fb);
        Bytes.Be32(image, 4, (uint)Version);
        Bytes.Be32(image, 20, (uint)ClusterBits);
        Bytes.Be64(image, 24, (ulong)Size);
        long perL1 = 1L << (2 * ClusterBits - 3);
        Bytes.Be32(image, 36, (uint)((Size + perL1 - 1) / perL1));
        Bytes.Be64(image, 40, (ulong)Offset(L1Cluster));
        Bytes.Be64(image, 48, (ulong)Offset(RefTableCluster));
        Bytes.Be32(image, 56, 1);
        if (WithSnapshot)
        {
            Bytes.Be32(image, 60, 1);
            Bytes.Be64(image, 64, (ulong)Offset(SnapshotTableCluster));
        }
        int pos = 72;
        if (Version == 3)
        {
            Bytes.Be32(image, 96, 4);             // refcount_order: 16-bit refcounts
            Bytes.Be32(image, 100, (uint)HeaderLength);
            pos = HeaderLength;
        }
        var extensions = new List<(uint, byte[])>();
        if (BackingFormat != null) extensions.Add((BackingFormatExtension, Encoding.UTF8.GetBytes(BackingFormat)));
        extensions.AddRange(Extensions);
        foreach (var (type, data) in extensions)
        {
            Bytes.Be32(image, pos, type);
            Bytes.Be32(image, pos + 4, (uint)data.Length);
            data.CopyTo(image, pos + 8);
            pos += 8 + (data.Length + 7) / 8 * 8;
        }
        pos += 8; // end of extensions
        if (BackingName != null)
        {
            byte[] name = Encoding.UTF8.GetBytes(BackingName);
            name.CopyTo(image, pos);
            Bytes.Be64(image, 8, (ulong)pos);
            Bytes.Be32(image, 16, (uint)name.Length);
            BackingNameOffset = pos;
        }
    }

    private void WriteSnapshotEntry(byte[] image, long at)
    {
        Bytes.Be64(image, at, (ulong)Offset(SnapshotL1Cluster));
        long perL1 = 1L << (2 * ClusterBits - 3);
        Bytes.Be32(image, at + 8, (uint)((Size + perL1 - 1) / perL1));
        image[at + 13] = 1;                                   // id_str_size
        image[at + 15] = 6;                                   // name_size
        Bytes.Be32(image, at + 16, 1_700_000_000);           // date
        Bytes.Be32(image, at + 36, 16);                      // extra_data_size: vm_state_size_large, disk_size
        Bytes.Be64(image, at + 48, (ulong)Size);
        Encoding.ASCII.GetBytes("1before").CopyTo(image, at + 56);
    }
}
