// Corpus: VDI images (VirtualBox VDICore.h VDIHEADER1; QEMU block/vdi.c): a small dynamic image built byte by
// byte (header sector, block map at 0x200, data blocks from 0x400; guest block 0 allocated, block 1 not), with
// every header field at 0, its maximum, a misaligned and an overflowing value, block map entries out of range
// or shared, and truncation at each structure.
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;

namespace VDisk.Engine.Tests.Corpus;

internal static class VdiCases
{
    private const int Version = 0x44, HeaderSize = 0x48, ImageType = 0x4c, ImageFlags = 0x50, BlockMapOffset = 0x154, DataOffset = 0x158,
        LegacySectorSize = 0x168, DiskSize = 0x170, BlockSize = 0x178, BlockExtra = 0x17c, BlocksInImage = 0x180, BlocksAllocated = 0x184,
        ImageUuid = 0x188, LinkUuid = 0x1a8, ParentUuid = 0x1b8, MapStart = 0x200, DataStart = 0x400, Block = 1 << 20;

    private const string QemuLenient = "QEMU's vdi driver does not check this field against the others; VDisk refuses inconsistent VDI metadata";
    private const string QemuIgnoresParent = "QEMU reads undo and differencing VDI images as plain ones, without their parent; VDisk refuses them rather than give wrong content";
    private const string QemuMapUnchecked = "QEMU does not check block map entries against blocks_allocated; VDisk refuses a map pointing past the allocated blocks or two blocks at one";

    public static byte[] Sample()
    {
        var image = new byte[DataStart + Block];
        System.Text.Encoding.ASCII.GetBytes("<<< QEMU VM Virtual Disk Image >>>\n").CopyTo(image, 0);
        Bytes.Le32(image, 0x40, 0xbeda107f);
        Bytes.Le32(image, Version, 0x00010001);
        Bytes.Le32(image, HeaderSize, 0x180);
        Bytes.Le32(image, ImageType, 1);
        Bytes.Le32(image, BlockMapOffset, MapStart);
        Bytes.Le32(image, DataOffset, DataStart);
        Bytes.Le32(image, LegacySectorSize, 512);
        Bytes.Le64(image, DiskSize, 2 * Block);
        Bytes.Le32(image, BlockSize, Block);
        Bytes.Le32(image, BlocksInImage, 2);
        Bytes.Le32(image, BlocksAllocated, 1);
        image[ImageUuid] = 0x42;
        Bytes.Le32(image, MapStart, 0);
        Bytes.Le32(image, MapStart + 4, 0xffffffff);
        for (int i = 0; i < 8192; i++) image[DataStart + i] = (byte)(i % 253 + 1);
        return image;
    }

    public static void Write(CorpusWriter w)
    {
        var image = Sample();
        void Case(string name, Action<byte[]> change, Outcome outcome, string? qemuDiffers = null) =>
            w.Add($"vdi-{name}", "vdi", "image.vdi", Bytes.With(image, change), outcome, qemuDiffers: qemuDiffers);

        Case("valid", _ => { }, Outcome.Valid);
        Case("text-garbage", b => Array.Fill(b, (byte)0xff, 0, 0x40), Outcome.Valid);
        Case("version-zero", b => Bytes.Le32(b, Version, 0), Outcome.Unsupported(Info, "version"));
        Case("version-1.0", b => Bytes.Le32(b, Version, 0x00010000), Outcome.Unsupported(Info, "version"));
        Case("version-max", b => Bytes.Le32(b, Version, uint.MaxValue), Outcome.Unsupported(Info, "version"));
        Case("header-size-zero", b => Bytes.Le32(b, HeaderSize, 0), Outcome.Corrupt(Info, "header_size"), QemuLenient);
        Case("header-size-max", b => Bytes.Le32(b, HeaderSize, uint.MaxValue), Outcome.Unsupported(Info, "sector_size"), QemuLenient);
        Case("image-type-zero", b => Bytes.Le32(b, ImageType, 0), Outcome.Corrupt(Info, "image_type"), QemuLenient);
        Case("image-type-undo", b => Bytes.Le32(b, ImageType, 3), Outcome.Unsupported(Info, "image_type"), QemuIgnoresParent);
        Case("image-type-differencing", b => Bytes.Le32(b, ImageType, 4), Outcome.Unsupported(Info, "image_type"), QemuIgnoresParent);
        Case("image-type-max", b => Bytes.Le32(b, ImageType, uint.MaxValue), Outcome.Corrupt(Info, "image_type"), QemuLenient);
        Case("image-type-static", b => Bytes.Le32(b, ImageType, 2), Outcome.Valid);
        Case("image-flags-unknown", b => Bytes.Le32(b, ImageFlags, 2), Outcome.Unsupported(Info, "image_flags"), QemuLenient);
        Case("image-flags-max", b => Bytes.Le32(b, ImageFlags, uint.MaxValue), Outcome.Unsupported(Info, "image_flags"), QemuLenient);
        Case("offset-bmap-zero", b => Bytes.Le32(b, BlockMapOffset, 0), Outcome.Corrupt(Info, "offset_bmap"), QemuLenient);
        Case("offset-bmap-misaligned", b => Bytes.Le32(b, BlockMapOffset, MapStart + 4), Outcome.Unsupported(Info, "offset_bmap"));
        Case("offset-bmap-past-eof", b => Bytes.Le32(b, BlockMapOffset, 0x7fff_fe00), Outcome.Corrupt(Info, "offset_bmap"), QemuLenient);
        Case("offset-bmap-max", b => Bytes.Le32(b, BlockMapOffset, uint.MaxValue), Outcome.Unsupported(Info, "offset_bmap"));
        Case("offset-data-zero", b => Bytes.Le32(b, DataOffset, 0), Outcome.Corrupt(Info, "offset_data"), QemuLenient);
        Case("offset-data-misaligned", b => Bytes.Le32(b, DataOffset, DataStart + 1), Outcome.Unsupported(Info, "offset_data"));
        Case("offset-data-past-eof", b => Bytes.Le32(b, DataOffset, 0x7fff_fe00), Outcome.Valid);
        Case("offset-data-into-map", b => Bytes.Le32(b, DataOffset, MapStart), Outcome.Corrupt(Info, "offset_data"), QemuLenient);
        Case("disk-size-zero", b => Bytes.Le64(b, DiskSize, 0), Outcome.Valid);
        Case("disk-size-max", b => Bytes.Le64(b, DiskSize, ulong.MaxValue), Outcome.Unsupported(Info, "disk_size"));
        Case("disk-size-misaligned", b => Bytes.Le64(b, DiskSize, Block + 1), Outcome.Valid);
        Case("disk-size-overflow", b => Bytes.Le64(b, DiskSize, 2 * Block + 1), Outcome.Corrupt(Info, "blocks_in_image"));
        Case("block-size-zero", b => Bytes.Le32(b, BlockSize, 0), Outcome.Unsupported(Info, "block_size"));
        Case("block-size-two-mib", b => Bytes.Le32(b, BlockSize, 2 * Block), Outcome.Unsupported(Info, "block_size"));
        Case("block-size-max", b => Bytes.Le32(b, BlockSize, uint.MaxValue), Outcome.Unsupported(Info, "block_size"));
        Case("block-extra", b => Bytes.Le32(b, BlockExtra, 512), Outcome.Unsupported(Info, "block_extra"), QemuLenient);
        Case("blocks-in-image-zero", b => Bytes.Le32(b, BlocksInImage, 0), Outcome.Corrupt(Info, "blocks_in_image"));
        Case("blocks-in-image-max", b => Bytes.Le32(b, BlocksInImage, uint.MaxValue), Outcome.Unsupported(Info, "blocks_in_image"));
        Case("blocks-in-image-large", b => Bytes.Le32(b, BlocksInImage, 1 << 20), Outcome.Corrupt(Info, "offset_bmap"), QemuLenient);
        Case("blocks-allocated-overflow", b => Bytes.Le32(b, BlocksAllocated, 3), Outcome.Corrupt(Info, "blocks_allocated"), QemuLenient);
        Case("blocks-allocated-max", b => Bytes.Le32(b, BlocksAllocated, uint.MaxValue), Outcome.Corrupt(Info, "blocks_allocated"), QemuLenient);
        Case("uuid-link", b => b[LinkUuid] = 1, Outcome.Unsupported(Info, "uuid_link"));
        Case("uuid-parent", b => b[ParentUuid] = 1, Outcome.Unsupported(Info, "uuid_parent"));
        Case("sector-size-zero", b => Bytes.Le32(b, LegacySectorSize, 0), Outcome.Unsupported(Info, "sector_size"));
        Case("map-entry-beyond-allocated", b => Bytes.Le32(b, MapStart + 4, 1), Outcome.Corrupt(Info, "blocks_allocated"), QemuMapUnchecked);
        Case("map-entry-largest-index", b => Bytes.Le32(b, MapStart, 0xfffffffd), Outcome.Corrupt(Info, "blocks_allocated"), QemuMapUnchecked);
        Case("map-entries-shared", b => { Bytes.Le32(b, BlocksAllocated, 2); Bytes.Le32(b, MapStart + 4, 0); }, Outcome.Corrupt(Info, "both point"), QemuMapUnchecked);
        Case("map-entry-discarded", b => Bytes.Le32(b, MapStart, 0xfffffffe), Outcome.Valid);
        Case("map-entry-data-past-eof", b => { Bytes.Le32(b, BlocksAllocated, 2); Bytes.Le32(b, MapStart + 4, 1); }, Outcome.Valid);
        foreach (var (label, length, outcome) in new (string, int, Outcome)[]
        {
            ("signature", 0x44, Outcome.Corrupt(Info, "truncated")),
            ("header", MapStart, Outcome.Corrupt(Info, "offset_bmap")),
            ("block-map", DataStart, Outcome.Valid),
            ("in-data", DataStart + 100, Outcome.Valid),
        })
            w.Add($"vdi-truncated-{label}", "vdi", "image.vdi", Bytes.Truncate(image, length), outcome,
                qemuDiffers: label == "header" ? "QEMU reads a block map past the end of the file as zeroes; VDisk refuses a truncated block map" : null);
    }
}
