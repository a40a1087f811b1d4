// Helpers to create and open images in tests, and deterministic test data.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Tests.Support;

public static class Images
{
    public static string Create(string path, CreateOptions options)
    {
        CreateImage.Run(path, options);
        return path;
    }

    public static VirtualDisk OpenWritable(string path) => ImageChain.Open(path, new OpenOptions { Writable = true });

    public static VirtualDisk OpenReadOnly(string path) => ImageChain.Open(path);

    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static byte[] ReadAll(VirtualDisk disk)
    {
        var bytes = new byte[disk.Length];
        disk.Read(0, bytes);
        return bytes;
    }
}
