// Real NBD clients for the server tests: qemu-img/qemu-io (qemu-utils) and nbdinfo/nbdcopy (libnbd-bin). Every
// run has a time limit and the process is killed by its id when it overruns, so a server bug fails the test instead
// of hanging the suite. Without the tools the tests fail in CI and skip (loudly) elsewhere, like the qemu interop tests.
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using VDisk.Engine.Chain;
using VDisk.Engine.Nbd;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Nbd;

public static class NbdTools
{
    private static readonly Lazy<bool> LibNbd = new(() => Which("nbdinfo") && Which("nbdcopy"));

    /// <summary>qemu-utils and libnbd-bin present, or fail (CI) / skip (elsewhere).</summary>
    public static void Require()
    {
        Qemu.Require();
        if (LibNbd.Value) return;
        if (Qemu.InCi) Assert.Fail("nbdinfo/nbdcopy are not installed, and CI=true: install libnbd-bin (.ci/run does).");
        Skip.If(true, "nbdinfo/nbdcopy not installed: NBD client test skipped (CI installs libnbd-bin).");
    }

    /// <summary>Runs a tool with a time limit; throws with its output when it fails or overruns.</summary>
    public static string Run(string tool, params string[] args)
    {
        var (code, output) = TryRun(tool, args);
        if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {code}:\n{output}");
        return output;
    }

    /// <summary>Runs a tool (60 s limit, then killed): exit code and stdout + stderr.</summary>
    public static (int ExitCode, string Output) TryRun(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, $"{tool} timed out after 60 s\n{stdout.Result}{stderr.Result}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>A server on a free loopback port exporting <paramref name="image"/> as <paramref name="name"/>.</summary>
    public static (NbdServer Server, string Uri) Serve(string image, string name = "disk", bool writable = false)
    {
        var disk = ImageChain.Open(image, new OpenOptions { Writable = writable });
        var server = new NbdServer(new[] { new NbdExport(name, disk, writable) });
        try
        {
            var endPoint = server.ListenTcp(IPAddress.Loopback, 0);
            return (server, $"nbd://127.0.0.1:{endPoint.Port}/{name}");
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>SHA-256 (hex) of a file.</summary>
    public static string FileSha(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream));
    }

    private static bool Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, tool)));
}
