// Runs the reference tools (qemu-img, qemu-io from Debian's qemu-utils). Interop tests call Require():
// without qemu-img the test fails when CI=true and is skipped (loudly) elsewhere.
using System.Text.Json;

namespace VDisk.Engine.Tests.Support;

public static class Qemu
{
    private static readonly Lazy<bool> Present = new(() => Which("qemu-img") && Which("qemu-io"));

    /// <summary>True when qemu-img and qemu-io are installed.</summary>
    public static bool Available => Present.Value;

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Fails in CI, skips elsewhere, when qemu-img/qemu-io are missing.</summary>
    public static void Require()
    {
        if (Present.Value) return;
        if (InCi) Assert.Fail("qemu-img/qemu-io are not installed, and CI=true: install qemu-utils (.ci/run does).");
        Skip.If(true, "qemu-img/qemu-io not installed: interop test skipped (CI installs qemu-utils).");
    }

    public static string Img(params string[] args) => Run("qemu-img", args);
    public static string Io(params string[] args) => Run("qemu-io", args);

    public static (int ExitCode, string Output) TryImg(params string[] args) => TryRun("qemu-img", args);

    public static JsonElement Info(string path)
    {
        using var doc = JsonDocument.Parse(Img("info", "--output=json", path));
        return doc.RootElement.Clone();
    }

    /// <summary>`qemu-img check --output=json`; asserts no corruptions, no leaks, no check errors.</summary>
    public static JsonElement CheckClean(string path)
    {
        var (code, output) = TryRunAfterClose("qemu-img", "check", "--output=json", path);
        Assert.True(code == 0, $"qemu-img check {path} exited {code}:\n{output}");
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement.Clone();
        Assert.Equal(0, Get(root, "corruptions"));
        Assert.Equal(0, Get(root, "leaks"));
        Assert.Equal(0, Get(root, "check-errors"));
        return root;
    }

    public static void AssertIdentical(string a, string b, params string[] formatArgs)
    {
        var args = new List<string> { "compare" };
        args.AddRange(formatArgs);
        args.Add(a);
        args.Add(b);
        var (code, output) = TryRunAfterClose("qemu-img", args.ToArray());
        Assert.True(code == 0, $"qemu-img compare {a} {b} exited {code}: {output}");
    }

    private static int Get(JsonElement root, string name) => root.TryGetProperty(name, out var v) ? v.GetInt32() : 0;

    private static string Run(string tool, params string[] args)
    {
        var (code, output) = TryRunAfterClose(tool, args); // every call may follow a close of ours (see TryRunAfterClose)
        if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {code}:\n{output}");
        return output;
    }

    // QEMU calibrates LUKS key slots by timing PBKDF2 with the thread's CPU clock; on a loaded machine that clock can
    // show no progress and qemu-img gives up ("Unable to get accurate CPU usage") before writing anything. That is the
    // reference tool's transient failure, not a result, so it is retried.
    private static (int, string) TryRun(string tool, params string[] args)
    {
        for (int attempt = 1; ; attempt++)
        {
            var (code, output) = HostSetup.TryRun(tool, args);
            if (code == 0 || attempt == 6 || !output.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal)) return (code, output);
            Thread.Sleep(50 * attempt); // let the other shared core's load pass
        }
    }

    // For checks made after our code has closed the image. Tests run in parallel, and a child process another test
    // forks in the moment we close a file shares our open file description (and with it QEMU's lock) until it execs;
    // qemu-img then fails on the lock for a few milliseconds. Such a lock failure is retried briefly; any other result
    // is returned as it is.
    private static (int, string) TryRunAfterClose(string tool, params string[] args)
    {
        for (int attempt = 1; ; attempt++)
        {
            var (code, output) = TryRun(tool, args);
            if (code == 0 || attempt == 5 || !output.Contains("lock", StringComparison.Ordinal) || !output.Contains("Failed to get", StringComparison.Ordinal))
                return (code, output);
            Thread.Sleep(100 * attempt);
        }
    }

    private static bool Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(dir => File.Exists(Path.Combine(dir, tool)));
}
