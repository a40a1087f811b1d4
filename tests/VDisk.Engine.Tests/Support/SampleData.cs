// A deterministic sample disk: random, text-like and zero-filled extents with large holes, like the
// benchmark input at a small scale.
using System.Text;

namespace VDisk.Engine.Tests.Support;

public static class SampleData
{
    /// <summary>Writes a raw file of <paramref name="size"/> bytes with mixed extents and holes; returns its bytes.</summary>
    public static byte[] WriteRaw(string path, int size, int seed)
    {
        var bytes = new byte[size];
        var random = new Random(seed);
        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 20_000).Select(i => $"log line {i}: status ok, value {i * 7 % 1000}\n")));
        for (int pos = 0; pos < size;)
        {
            int length = Math.Min(size - pos, random.Next(4096, 600_000));
            switch (random.Next(4))
            {
                case 0: random.NextBytes(bytes.AsSpan(pos, length)); break;
                case 1:
                    for (int i = 0; i < length; i += text.Length)
                        text.AsSpan(0, Math.Min(text.Length, length - i)).CopyTo(bytes.AsSpan(pos + i));
                    break;
                default: break; // zeroes (a hole in the sparse file)
            }
            pos += length;
        }
        using var file = new FileStream(path, FileMode.CreateNew);
        file.SetLength(size);
        for (int pos = 0; pos < size; pos += 65536)
        {
            var block = bytes.AsSpan(pos, Math.Min(65536, size - pos));
            if (block.IndexOfAnyExcept((byte)0) < 0) continue;
            file.Position = pos;
            file.Write(block);
        }
        return bytes;
    }
}
