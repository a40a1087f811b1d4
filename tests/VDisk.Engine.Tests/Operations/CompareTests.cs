// Compare: content equality across formats, the zero tail rule for different sizes, and strict mode's
// block-status comparison, each checked against qemu-img compare's exit code.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class CompareTests
{
    [SkippableFact]
    public void AgreesWithQemuImgCompare()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string empty = dir.File("e.qcow2"), zeroed = dir.File("z.qcow2"), data = dir.File("d.qcow2"), raw = dir.File("d.raw");
        Qemu.Img("create", "-q", "-f", "qcow2", empty, "8M");
        Qemu.Img("create", "-q", "-f", "qcow2", zeroed, "8M");
        Interop.QemuWrittenQcow2Tests.WriteWithQemuIo(zeroed, "qcow2", "write -z 2M 64k");
        Qemu.Img("create", "-q", "-f", "qcow2", data, "8M");
        Interop.QemuWrittenQcow2Tests.WriteWithQemuIo(data, "qcow2", "write -P 0x33 3M 5000");
        Qemu.Img("convert", "-O", "raw", data, raw);
        foreach (var (a, b, strict) in new[] { (empty, zeroed, false), (empty, zeroed, true), (data, raw, false), (data, raw, true), (empty, data, false) })
        {
            var args = strict ? new[] { "compare", "-s", a, b } : new[] { "compare", a, b };
            bool qemuEqual = Qemu.TryImg(args).ExitCode == 0;
            Assert.True(qemuEqual == CompareImages.Run(a, b, strict).Equal, $"{Path.GetFileName(a)} vs {Path.GetFileName(b)} strict={strict}: qemu-img says equal={qemuEqual}");
        }
    }

    [Fact]
    public void ReportsTheFirstDifferenceAndTheZeroTailRule()
    {
        using var dir = new TempFolder();
        string a = dir.File("a.raw"), b = dir.File("b.raw");
        var bytes = Images.Pattern(1 << 20, 1);
        File.WriteAllBytes(a, bytes);
        bytes[777_777] ^= 1;
        File.WriteAllBytes(b, bytes);
        var result = CompareImages.Run(a, b);
        Assert.False(result.Equal);
        Assert.Equal(777_777, result.FirstDifferenceOffset);

        string longer = dir.File("longer.raw");
        bytes[777_777] ^= 1;
        File.WriteAllBytes(longer, bytes.Concat(new byte[1 << 20]).ToArray());
        var sameContent = CompareImages.Run(a, longer);
        Assert.True(sameContent.Equal);
        Assert.True(sameContent.SizeDiffers);
        Assert.False(CompareImages.Run(a, longer, strict: true).Equal);
    }
}
