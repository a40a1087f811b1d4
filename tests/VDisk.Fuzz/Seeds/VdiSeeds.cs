// VDI seeds: dynamic images (empty, with data, with two blocks allocated out of guest order), a static image, a 1 GiB dynamic image
// with a longer block map, and (when installed) qemu-img's dynamic and static layouts. Data blocks past the end
// of the file read as zeroes; the header and block map before offset_data must stay.
using System.Buffers.Binary;
using VDisk.Engine.Core;

namespace VDisk.Fuzz.Seeds;

internal static class VdiSeeds
{
    private const long K = 1024, M = 1024 * 1024;
    private const int DataOffsetOffset = 0x158;

    public static IEnumerable<Seed> Make(SeedWorkspace w)
    {
        yield return Filled(w, "dynamic-empty.vdi", new CreateOptions { Size = 4 * M }, Array.Empty<(long, int)>());
        yield return Filled(w, "dynamic-data.vdi", new CreateOptions { Size = 5 * M }, new[] { (2 * M, 4096) }, (3 * M, 1 * M));
        yield return TwoBlocks(w);
        yield return Filled(w, "static.vdi", new CreateOptions { Size = 3 * M, Subformat = ImageSubformat.Static }, new[] { (100L, 300) });
        yield return Filled(w, "dynamic-1g.vdi", new CreateOptions { Size = 1024 * M }, new[] { (700 * M, 512) });

        if (w.QemuImg is null) yield break;
        string raw = w.Raw("source.raw", 3 * M, (0, 8 * 1024));
        w.Qemu("convert", "-f", "raw", "-O", "vdi", raw, "qemu-dynamic.vdi");
        yield return Trimmed(w.PathOf("qemu-dynamic.vdi"));
        w.Qemu("create", "-f", "vdi", "-o", "static=on", "qemu-static.vdi", "2M");
        yield return Trimmed(w.PathOf("qemu-static.vdi"));
    }

    private static Seed Filled(SeedWorkspace w, string name, CreateOptions options, (long, int)[] data, params (long, long)[] zeroes)
    {
        string path = w.Create(name, options with { Format = ImageFormat.Vdi });
        w.Fill(path, data, zeroes);
        return Trimmed(path);
    }

    // Guest block 3 holds data in data block 0; guest block 1 is allocated next (data block 1) but holds zeroes,
    // so the file ends right after the data: two allocated entries out of order, in a seed of a few kilobytes.
    private static Seed TwoBlocks(SeedWorkspace w)
    {
        string path = w.Create("two-blocks.vdi", new CreateOptions { Format = ImageFormat.Vdi, Size = 4 * M });
        w.Edit(path, disk =>
        {
            disk.Write(3 * M + 512, SeedWorkspace.Content(3 * M + 512, 2048));
            disk.Write(1 * M, new byte[4096]);
        });
        return Trimmed(path);
    }

    private static Seed Trimmed(string path)
    {
        Span<byte> header = stackalloc byte[512];
        using (var file = File.OpenRead(path)) file.ReadExactly(header);
        return Seed.Trimmed(Path.GetFileName(path), path, BinaryPrimitives.ReadUInt32LittleEndian(header[DataOffsetOffset..]));
    }
}
