// Real host objects for destination tests: loop block devices (losetup), small file systems (tmpfs with a size
// limit, ramfs which has no fallocate), FIFOs. They need root (CAP_SYS_ADMIN); Require() fails the test in CI when
// the tests do not run as root, and skips it (loudly) elsewhere, like the qemu-img interop tests.
using System.Diagnostics;

namespace VDisk.Engine.Tests.Support;

public static class HostSetup
{
    public static bool IsRoot => OperatingSystem.IsLinux() && Environment.UserName == "root";

    /// <summary>Fails in CI, skips elsewhere, when the test cannot create devices and mounts.</summary>
    public static void RequireRoot()
    {
        if (IsRoot) return;
        if (Qemu.InCi) Assert.Fail("This test needs root (loop devices, mounts), and CI=true: run the tests as root.");
        Skip.If(true, "Not root: test of loop devices and mounts skipped.");
    }

    /// <summary>Runs a host tool; throws with its output when it fails.</summary>
    public static string Run(string tool, params string[] args)
    {
        var (code, output) = TryRun(tool, args);
        if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {code}: {output}");
        return output.Trim();
    }

    /// <summary>Runs a host tool; its exit code and its output (stdout, then stderr).</summary>
    public static (int ExitCode, string Output) TryRun(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr.Result);
    }

    public static void MakeFifo(string path) => Run("mkfifo", path);
}

/// <summary>
/// A loop block device over a backing file, detached on dispose. Tests write through a private node for it beside
/// the backing file, never through /dev/loopN: code that wrongly replaced a destination node with a file (the bug
/// these tests guard against) must not be able to destroy the host's /dev.
/// </summary>
public sealed class LoopDevice : IDisposable
{
    private readonly string _device;

    public LoopDevice(string backingFile, bool readOnly = false)
    {
        _device = readOnly ? HostSetup.Run("losetup", "-f", "--show", "-r", backingFile) : HostSetup.Run("losetup", "-f", "--show", backingFile);
        string[] numbers = HostSetup.Run("stat", "-c", "%t %T", _device).Split(' ');
        Path = backingFile + ".dev";
        HostSetup.Run("mknod", "-m", "600", Path, "b", Convert.ToInt32(numbers[0], 16).ToString(), Convert.ToInt32(numbers[1], 16).ToString());
    }

    /// <summary>The private block device node, beside the backing file.</summary>
    public string Path { get; }

    public byte[] Read(int length)
    {
        using var device = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var bytes = new byte[length];
        device.ReadExactly(bytes);
        return bytes;
    }

    public void Dispose()
    {
        HostSetup.Run("losetup", "-d", _device);
        File.Delete(Path);
    }
}

/// <summary>A file system mounted on a fresh folder (tmpfs with a size, or ramfs), unmounted on dispose.</summary>
public sealed class ScratchMount : IDisposable
{
    public ScratchMount(string folder, string type, string? options = null)
    {
        Directory.CreateDirectory(folder);
        Path = folder;
        if (options is null) HostSetup.Run("mount", "-t", type, type, folder);
        else HostSetup.Run("mount", "-t", type, "-o", options, type, folder);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Fills the file system with one file until only about <paramref name="leaveBytes"/> are free.</summary>
    public void Fill(long leaveBytes)
    {
        long target = new DriveInfo(Path).AvailableFreeSpace - leaveBytes;
        using var filler = new FileStream(File("filler"), FileMode.CreateNew);
        var block = new byte[65536];
        for (long written = 0; written < target; written += block.Length)
            filler.Write(block, 0, (int)Math.Min(block.Length, target - written));
    }

    /// <summary>Unmounts; a mount kept busy (a file left open: a bug) is detached lazily and reported.</summary>
    public void Dispose()
    {
        try
        {
            HostSetup.Run("umount", Path);
        }
        catch (InvalidOperationException)
        {
            HostSetup.Run("umount", "--lazy", Path);
            throw;
        }
    }
}
