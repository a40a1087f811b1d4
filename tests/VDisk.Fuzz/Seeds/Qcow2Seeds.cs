// qcow2 seeds: versions 2 and 3, cluster sizes 512 B to 64 KiB, refcount widths 1 to 64 bits, lazy refcounts,
// zero clusters, a backing file name and format, zlib and zstd compressed clusters, a 256 GiB sparse disk, and
// (with qemu-img) internal snapshots and QEMU's own compressed layout. Most use 512-byte clusters and little
// data, so a seed is a few kilobytes and mutations land in the header and tables.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Fuzz.Seeds;

internal static class Qcow2Seeds
{
    private const long K = 1024, M = 1024 * 1024;

    public static IEnumerable<Seed> Make(SeedWorkspace w)
    {
        (long, int)[] someData = { (0, 1536), (20 * K, 512), (200 * K, 700) };
        yield return Filled(w, "v3-c512-empty.qcow2", new CreateOptions { Size = 64 * K, ClusterSize = 512 }, Array.Empty<(long, int)>());
        yield return Filled(w, "v3-c512.qcow2", new CreateOptions { Size = 256 * K, ClusterSize = 512 }, someData, (40 * K, 8 * K));
        yield return Filled(w, "v2-c512.qcow2", new CreateOptions { Size = 1 * M, ClusterSize = 512, Compat = "0.10" }, someData);
        yield return Filled(w, "v2-c4k.qcow2", new CreateOptions { Size = 1 * M, ClusterSize = 4096, Compat = "0.10" }, new[] { (8 * K, 100) });
        yield return Filled(w, "v3-c512-rc1.qcow2", new CreateOptions { Size = 1 * M, ClusterSize = 512, RefcountBits = 1 }, someData, (64 * K, 64 * K));
        yield return Filled(w, "v3-c512-rc64-lazy.qcow2", new CreateOptions { Size = 16 * M, ClusterSize = 512, RefcountBits = 64, LazyRefcounts = true }, new[] { (0L, 512) });
        yield return Filled(w, "v3-c64k-256g.qcow2", new CreateOptions { Size = 1L << 38 }, new[] { (1L << 37, 512) });

        string backing = w.Create("base.qcow2", new CreateOptions { Size = 1 * M, ClusterSize = 512 });
        yield return Filled(w, "v3-c512-backing.qcow2", new CreateOptions { ClusterSize = 512, BackingPath = backing, BackingFormat = ImageFormat.Qcow2 },
            new[] { (8 * K, 512) }, (64 * K, 8 * K));

        string raw = w.Raw("source.raw", 64 * K, (0, 3 * 1024), (30 * K, 700), (60 * K, 1024));
        foreach (var type in new[] { CompressionType.Zlib, CompressionType.Zstd })
        {
            string name = $"v3-c4k-{type.ToString().ToLowerInvariant()}.qcow2";
            yield return Seed.Trimmed(name, w.Convert(raw, name, new ConvertOptions { Compress = true, CompressionType = type, ClusterSize = 4096 }), 0);
        }

        if (w.QemuImg is null) yield break;
        string snapshots = w.Create("snapshots.qcow2", new CreateOptions { Size = 256 * K, ClusterSize = 512 });
        w.Fill(snapshots, someData);
        w.Qemu("snapshot", "-c", "first", snapshots);
        w.Fill(snapshots, new[] { (0L, 512), (100 * K, 512) });
        w.Qemu("snapshot", "-c", "second", snapshots);
        yield return Seed.Trimmed("qemu-snapshots.qcow2", snapshots, 0);
        w.Qemu("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096,compression_type=zstd", raw, "qemu-zstd.qcow2");
        yield return Seed.Trimmed("qemu-zstd.qcow2", w.PathOf("qemu-zstd.qcow2"), 0);
        w.Qemu("create", "-f", "qcow2", "-o", "compat=0.10,cluster_size=512", "qemu-v2-c512.qcow2", "16M");
        yield return Seed.Trimmed("qemu-v2-c512.qcow2", w.PathOf("qemu-v2-c512.qcow2"), 0);
    }

    private static Seed Filled(SeedWorkspace w, string name, CreateOptions options, (long, int)[] data, params (long, long)[] zeroes)
    {
        string path = w.Create(name, options with { Format = ImageFormat.Qcow2 });
        w.Fill(path, data, zeroes);
        return Seed.Trimmed(name, path, 0);
    }
}
