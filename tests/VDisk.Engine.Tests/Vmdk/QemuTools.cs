// Runs the reference tools (qemu-img, qemu-io) for interop tests. Without them on PATH the tests are
// skipped with a clear reason, except in CI (CI=true), where they fail: the reference must be present there.
using System.Diagnostics;
using Xunit;

namespace VDisk.Engine.Tests.Vmdk;

/// <summary>The qemu-utils reference tools.</summary>
internal static class QemuTools
{
    public static readonly string? QemuImg = FindOnPath("qemu-img");
    public static readonly string? QemuIo = FindOnPath("qemu-io");
    public static bool InCi => Environment.GetEnvironmentVariable("CI") == "true";
    public static string? SkipReason => QemuImg != null && QemuIo != null ? null
        : "qemu-img/qemu-io not found on PATH (install qemu-utils); interop test skipped (it fails when CI=true).";

    /// <summary>Fails the test when the tools are missing (reached only in CI: elsewhere the attributes skip).</summary>
    public static void Require()
    {
        if (SkipReason != null) Assert.Fail($"CI=true but {SkipReason}");
    }

    /// <summary>Runs qemu-img; asserts success and returns stdout.</summary>
    public static string Img(params string[] args)
    {
        var (code, output, error) = Run(QemuImg!, args);
        Assert.True(code == 0, $"qemu-img {string.Join(' ', args)} exited {code}: {error}{output}");
        return output;
    }

    /// <summary>Runs qemu-img and returns its exit code and output without asserting.</summary>
    public static (int Code, string Output, string Error) TryImg(params string[] args) => Run(QemuImg!, args);

    /// <summary>Runs qemu-io commands (write -P ..., write -z ...) on an image of format <paramref name="format"/>.</summary>
    public static void Io(string image, string format, params string[] commands)
    {
        var args = new List<string> { "-f", format, "-t", "writeback" };
        foreach (var c in commands) args.AddRange(new[] { "-c", c });
        args.Add(image);
        var (code, output, error) = Run(QemuIo!, args.ToArray());
        Assert.True(code == 0 && !output.Contains("error", StringComparison.OrdinalIgnoreCase) && !output.Contains("failed", StringComparison.OrdinalIgnoreCase),
            $"qemu-io {string.Join(' ', args)} exited {code}: {error}{output}");
    }

    private static (int, string, string) Run(string tool, string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    private static string? FindOnPath(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}

/// <summary>A fact that needs qemu-img: skipped when it is missing, unless CI=true.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (QemuTools.SkipReason != null && !QemuTools.InCi) Skip = QemuTools.SkipReason;
    }
}

/// <summary>A theory that needs qemu-img: skipped when it is missing, unless CI=true.</summary>
public sealed class QemuTheoryAttribute : TheoryAttribute
{
    public QemuTheoryAttribute()
    {
        if (QemuTools.SkipReason != null && !QemuTools.InCi) Skip = QemuTools.SkipReason;
    }
}

/// <summary>A fresh folder under the system temp folder, deleted afterwards.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vdisk-vmdk-tests", Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
