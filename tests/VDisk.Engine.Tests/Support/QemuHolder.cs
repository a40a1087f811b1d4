// A qemu-io process holding an image open for writing, with QEMU's locks, as a running VM does; killed on dispose.
using System.Diagnostics;

namespace VDisk.Engine.Tests.Support;

public sealed class QemuHolder : IDisposable
{
    private readonly Process _process;

    /// <summary>Opens <paramref name="image"/> (of <paramref name="format"/>) in qemu-io and waits until it holds it.</summary>
    public QemuHolder(string image, string format)
    {
        // stdbuf: qemu-io's stdout is a pipe, and its report must not wait in a buffer. Its first command's report
        // means the image is open and locked; reading one byte changes nothing.
        var psi = new ProcessStartInfo("stdbuf") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-oL", "qemu-io", "-f", format, "-c", "read 0 512", "-c", "sleep 20000", image }) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        string? line = _process.StandardOutput.ReadLine();
        if (line is null || !line.StartsWith("read", StringComparison.Ordinal))
        {
            Dispose();
            throw new InvalidOperationException($"qemu-io did not open {image}: {line} {_process.StandardError.ReadToEnd()}");
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.WaitForExit();
        _process.Dispose();
    }
}
