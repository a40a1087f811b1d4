// qemu-io over VMDK images for interop tests (on top of the shared Support.Qemu runner).
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Vmdk;

internal static class VmdkQemu
{
    /// <summary>Runs qemu-io commands (write -P ..., write -z ...) on a VMDK image; any failed command fails the test.</summary>
    public static void Io(string image, params string[] commands)
    {
        var args = new List<string> { "-f", "vmdk", "-t", "writeback" };
        foreach (var c in commands) args.AddRange(new[] { "-c", c });
        args.Add(image);
        string output = Qemu.Io(args.ToArray());
        Assert.False(output.Contains("failed", StringComparison.OrdinalIgnoreCase), $"qemu-io {string.Join(' ', args)}: {output}");
    }
}
