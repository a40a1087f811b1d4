// Running the reference tools (qemu-img, qemu-io) from interop tests. Without them on PATH an interop test
// is skipped with a clear reason, except in CI (env CI == "true"), where it runs and fails loudly.
using System.Diagnostics;
using Xunit;
using Xunit.Sdk;

namespace VDisk.Engine.Tests.Vdi;

/// <summary>The output of one tool run.</summary>
public sealed record ToolResult(int ExitCode, string StdOut, string StdErr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout: {StdOut}\nstderr: {StdErr}";
}

/// <summary>Finds and runs qemu-img / qemu-io.</summary>
public static class QemuTools
{
    /// <summary>True when running in CI, where missing reference tools are a failure, not a skip.</summary>
    public static bool InCi => Environment.GetEnvironmentVariable("CI") == "true";

    /// <summary>The reason interop tests are skipped here, or null when they run.</summary>
    public static string? SkipReason => Find("qemu-img") is null && !InCi
        ? "qemu-img is not on PATH: interop tests skipped (install qemu-utils; in CI, with CI=true, they fail instead)."
        : null;

    /// <summary>Full path of <paramref name="tool"/> on PATH, or null.</summary>
    public static string? Find(string tool)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Runs <paramref name="tool"/>; fails the test when the tool is missing.</summary>
    public static ToolResult Run(string tool, params string[] args)
    {
        string exe = Find(tool) ?? throw new XunitException($"{tool} is not on PATH (CI={Environment.GetEnvironmentVariable("CI")}); install qemu-utils.");
        var info = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new XunitException($"{tool} {string.Join(' ', args)} did not finish in 120 s.");
        }
        return new ToolResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs <paramref name="tool"/> and fails the test unless it exits with 0.</summary>
    public static ToolResult RunOk(string tool, params string[] args)
    {
        var result = Run(tool, args);
        if (result.ExitCode != 0) throw new XunitException($"{tool} {string.Join(' ', args)} failed: {result}");
        return result;
    }
}

/// <summary>A fact that needs qemu-img: skipped with a reason when it is missing outside CI.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (QemuTools.SkipReason is { } reason) Skip = reason;
    }
}

/// <summary>A theory that needs qemu-img: skipped with a reason when it is missing outside CI.</summary>
public sealed class QemuTheoryAttribute : TheoryAttribute
{
    public QemuTheoryAttribute()
    {
        if (QemuTools.SkipReason is { } reason) Skip = reason;
    }
}
