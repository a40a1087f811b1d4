// The read-only VMDK and VDI checks beside qemu-img check: images qemu-img made are healthy for both tools; a grain
// past the end of the file and a VDI block map with a shared or out-of-range entry are corruptions both tools count
// the same; a redundant grain table that disagrees with the primary one (which qemu-img does not look at) is one for
// VDisk; and neither format can be repaired.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class TableCheckInteropTests
{
    public static TheoryData<string> Damages => new() { "none", "grain past the end", "redundant table differs", "shared block", "block beyond the map" };

    [SkippableTheory]
    [MemberData(nameof(Damages))]
    public void VmdkAndVdiFindingsMatchQemu(string damage)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        bool vdi = damage is "shared block" or "block beyond the map";
        string path = dir.File(vdi ? "d.vdi" : "v.vmdk");
        Qemu.Img("create", "-q", "-f", vdi ? "vdi" : "vmdk", path, "64M");
        Qemu.Io("-t", "writeback", "-c", "write -P 1 0 3M", path);
        var bytes = File.ReadAllBytes(path);
        if (vdi) DamageVdi(bytes, damage);
        else if (damage != "none") DamageVmdk(bytes, damage);
        File.WriteAllBytes(path, bytes);

        var ours = CheckImage.Run(path);
        var (_, output) = Qemu.TryImg("check", "--output=json", "-f", vdi ? "vdi" : "vmdk", path);
        long expected = damage switch
        {
            "redundant table differs" => 1, // qemu-img does not compare the redundant directory
            "grain past the end" => output.Split('\n').Count(l => l.Contains("points after EOF")), // qemu-img then gives up without JSON
            _ => CheckRepairInteropTests.QemuCheck(path, vdi ? "vdi" : "vmdk").Json.TryGetProperty("corruptions", out var c) ? c.GetInt64() : 0,
        };
        Assert.True(expected > 0 || damage == "none", $"{damage}: qemu-img check found nothing: {output}");
        Assert.True(expected == ours.Corruptions, $"{damage}: expected {expected} corruption(s), VDisk found {ours.Corruptions}: {string.Join("; ", ours.Problems)}\n{output}");
        Assert.Equal(damage == "none", ours.IsHealthy);
        if (damage != "none") Assert.NotEmpty(ours.Problems);
        var e = Assert.Throws<VDiskException>(() => CheckImage.Run(path, RepairMode.All));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
    }

    [Fact]
    public void RawImagesHaveNothingToCheck()
    {
        using var dir = new TempFolder();
        string path = dir.File("r.raw");
        File.WriteAllBytes(path, new byte[1 << 20]);
        var e = Assert.Throws<VDiskException>(() => CheckImage.Run(path));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
    }

    private static void DamageVmdk(byte[] bytes, string damage)
    {
        var h = VmdkSparseHeader.Parse(bytes.AsSpan(0, 512), "v.vmdk");
        Assert.True(h.HasRedundantGd, "qemu-img writes a redundant grain directory");
        uint gt = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)(h.GdOffset * 512)));
        uint rgt = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)(h.RgdOffset * 512)));
        const uint Far = 0x7fff_0000;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)(rgt * 512L + 4)), Far); // grain 1 in the redundant table
        if (damage == "grain past the end") BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)(gt * 512L + 4)), Far);
    }

    private static void DamageVdi(byte[] bytes, string damage)
    {
        uint map = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(VdiHeader.BlockMapOffsetOffset));
        uint blocks = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(VdiHeader.BlocksInImageOffset));
        uint first = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)map));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)map + 4), damage == "shared block" ? first : blocks + 5);
    }
}
