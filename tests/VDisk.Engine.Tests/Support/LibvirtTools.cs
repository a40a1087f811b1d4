// The libvirt and QEMU tools the domain XML tests check against: virt-xml-validate (libvirt-clients with
// libxml2-utils) and qemu-system-x86_64 (qemu-system-x86). Require() fails the test when CI=true and one is missing,
// and skips it (loudly) elsewhere, like the qemu-img interop tests.
namespace VDisk.Engine.Tests.Support;

public static class LibvirtTools
{
    public static void Require(params string[] tools)
    {
        var missing = tools.Where(t => !(Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(dir => File.Exists(Path.Combine(dir, t)))).ToList();
        if (missing.Count == 0) return;
        if (Qemu.InCi) Assert.Fail($"{string.Join(", ", missing)} not installed, and CI=true: .ci/run installs libvirt-clients, libxml2-utils and qemu-system-x86.");
        Skip.If(true, $"{string.Join(", ", missing)} not installed: libvirt/QEMU test skipped.");
    }

    /// <summary>Runs virt-xml-validate on the text; its exit code and output.</summary>
    public static (int ExitCode, string Output) Validate(string xml)
    {
        string file = Path.Combine(Path.GetTempPath(), $"vdisk-validate-{Guid.NewGuid():N}.xml");
        File.WriteAllText(file, xml);
        try
        {
            return HostSetup.TryRun("virt-xml-validate", file, "domain");
        }
        finally
        {
            File.Delete(file);
        }
    }
}
