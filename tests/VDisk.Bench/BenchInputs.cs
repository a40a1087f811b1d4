// Benchmark inputs, made from fixed seeds so every run converts the same bytes: input A is a 4 GiB raw
// image with ~1.5 GiB of random, text-like and zero-filled extents (64 KiB - 4 MiB) between large
// holes; input B is a real ext4 filesystem built by mkfs.ext4 -d over a few hundred MB of system files.
using System.Text;

namespace VDisk.Bench;

internal static class BenchInputs
{
    public static string SyntheticRaw(string folder, long size = 4L << 30, int seed = 20261126)
    {
        string path = Path.Combine(folder, "input-a.raw");
        var random = new Random(seed);
        var words = "the of and to in is was for on that with as by at from kernel disk block sector cluster page inode journal write read"
            .Split(' ');
        var text = new StringBuilder();
        while (text.Length < 4 << 20) text.Append(words[random.Next(words.Length)]).Append(random.Next(8) == 0 ? '\n' : ' ');
        var textBytes = Encoding.ASCII.GetBytes(text.ToString());
        var buffer = new byte[4 << 20];
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        file.SetLength(size);
        long data = 0;
        for (long pos = 0; pos < size;)
        {
            int length = (int)Math.Min(size - pos, random.Next(64 << 10, 4 << 20));
            int kind = random.Next(100);
            var span = buffer.AsSpan(0, length);
            if (kind < 63) { pos += length; continue; } // hole
            if (kind < 76) random.NextBytes(span);
            else if (kind < 89) textBytes.AsSpan(random.Next(textBytes.Length - length), length).CopyTo(span);
            else span.Clear(); // zero-filled but allocated
            file.Position = pos;
            file.Write(span);
            data += length;
            pos += length;
        }
        Console.WriteLine($"input A: {size >> 20} MiB raw, {data >> 20} MiB written extents");
        return path;
    }

    public static string Ext4(string folder, long targetBytes = 400L << 20)
    {
        string staging = Path.Combine(folder, "ext4-tree");
        Directory.CreateDirectory(staging);
        long copied = 0;
        foreach (var candidate in new[] { "/usr/share/doc", "/usr/lib/python3.11", "/usr/share/perl", "/usr/lib/x86_64-linux-gnu", "/usr/share" })
        {
            if (!Directory.Exists(candidate)) continue;
            foreach (var file in Directory.EnumerateFiles(candidate, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            {
                if (copied >= targetBytes) break;
                string target = Path.Combine(staging, candidate.TrimStart('/').Replace('/', '_'), Path.GetRelativePath(candidate, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                try { File.Copy(file, target, overwrite: true); copied += new FileInfo(target).Length; }
                catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
        string image = Path.Combine(folder, "input-b.ext4.raw");
        Tools.Run("mkfs.ext4", "-q", "-F", "-d", staging, image, $"{Math.Max(copied * 2, 256L << 20) >> 20}M");
        Directory.Delete(staging, recursive: true);
        Console.WriteLine($"input B: ext4 image of {new FileInfo(image).Length >> 20} MiB holding {copied >> 20} MiB of files");
        return image;
    }
}
