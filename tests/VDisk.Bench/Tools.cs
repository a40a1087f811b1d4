// Process and timing helpers for the benchmarks.
using System.Diagnostics;

namespace VDisk.Bench;

internal static class Tools
{
    /// <summary>Runs <paramref name="tool"/> to its end and returns its standard output; a non-zero exit throws.</summary>
    public static string Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed: {err.Result}");
        return output;
    }

    public static double Seconds(Action action)
    {
        var sw = Stopwatch.StartNew();
        action();
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Medians of <paramref name="runs"/> timings of two actions run alternately (so a noisy spell of the machine hits
    /// both); <paramref name="prepare"/> runs untimed before each timing.
    /// </summary>
    public static (double First, double Second) MedianPair(int runs, Action? prepare, Action first, Action second)
    {
        var a = new List<double>();
        var b = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            prepare?.Invoke();
            a.Add(Seconds(first));
            prepare?.Invoke();
            b.Add(Seconds(second));
        }
        a.Sort();
        b.Sort();
        return (a[a.Count / 2], b[b.Count / 2]);
    }

    public static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => File.Exists(Path.Combine(d, tool)));
}
