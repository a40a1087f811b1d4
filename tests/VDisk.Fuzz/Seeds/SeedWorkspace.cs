// A scratch folder where seed images are made with the engine's public operations (create, write, convert)
// and, when qemu-img is installed, with qemu-img (internal snapshots, and QEMU's own layouts). Deleted on dispose.
using System.Diagnostics;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Fuzz.Seeds;

/// <summary>Makes small images in a temporary folder.</summary>
internal sealed class SeedWorkspace : IDisposable
{
    private static readonly byte[] Pattern = "VDisk fuzz seed: text-like, compressible content. "u8.ToArray();

    public SeedWorkspace()
    {
        Folder = Path.Combine(Path.GetTempPath(), "vdisk-fuzz-seeds-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Folder);
        QemuImg = FindOnPath("qemu-img");
    }

    /// <summary>The scratch folder.</summary>
    public string Folder { get; }

    /// <summary>Full path of qemu-img, or null when it is not installed (its seeds are then left out).</summary>
    public string? QemuImg { get; }

    /// <summary>The full path of <paramref name="name"/> in the folder.</summary>
    public string PathOf(string name) => Path.Combine(Folder, name);

    /// <summary>Creates an image and returns its path.</summary>
    public string Create(string name, CreateOptions options)
    {
        string path = PathOf(name);
        CreateImage.Run(path, options);
        return path;
    }

    /// <summary>Writes the seed pattern at each (offset, length) and zeroes each range in <paramref name="zeroes"/>.</summary>
    public void Fill(string path, (long Offset, int Length)[] data, (long Offset, long Length)[]? zeroes = null) => Edit(path, disk =>
    {
        foreach (var (offset, length) in data) disk.Write(offset, Content(offset, length));
        foreach (var (offset, length) in zeroes ?? Array.Empty<(long, long)>()) disk.WriteZeroes(offset, length, unmap: false);
    });

    /// <summary>Opens the image (without its backing file) for writing and runs <paramref name="edit"/> on it.</summary>
    public void Edit(string path, Action<VirtualDisk> edit)
    {
        using var disk = ImageChain.Open(path, new OpenOptions { Writable = true, OpenBacking = false });
        edit(disk);
    }

    /// <summary>A raw image of <paramref name="size"/> bytes with the pattern at each range, for conversions.</summary>
    public string Raw(string name, long size, params (long Offset, int Length)[] data)
    {
        string path = PathOf(name);
        using (var file = File.Create(path))
        {
            file.SetLength(size);
            foreach (var (offset, length) in data)
            {
                file.Position = offset;
                file.Write(Content(offset, length));
            }
        }
        return path;
    }

    /// <summary>Converts <paramref name="source"/> with the engine and returns the destination's path.</summary>
    public string Convert(string source, string name, ConvertOptions options)
    {
        string path = PathOf(name);
        ConvertImage.Run(source, path, options with { ThrottleLimit = 1 });
        return path;
    }

    /// <summary>Runs qemu-img with <paramref name="arguments"/>; fails when it fails.</summary>
    public void Qemu(params string[] arguments)
    {
        var start = new ProcessStartInfo(QemuImg ?? throw new InvalidOperationException("qemu-img is not installed"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Folder,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"qemu-img {string.Join(' ', arguments)} failed ({process.ExitCode}): {errors}");
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
            // a scratch folder left in the temp folder is harmless
        }
    }

    /// <summary>The seed pattern as it lies at guest <paramref name="offset"/>.</summary>
    public static byte[] Content(long offset, int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++) bytes[i] = Pattern[(offset + i) % Pattern.Length];
        return bytes;
    }

    private static string? FindOnPath(string tool) => (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, tool))
        .FirstOrDefault(File.Exists);
}
