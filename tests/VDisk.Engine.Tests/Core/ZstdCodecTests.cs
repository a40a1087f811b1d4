// Both zstd paths (the system's libzstd and the managed ZstdSharp fallback) write standard frames.
using VDisk.Engine.Compression;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Core;

public class ZstdCodecTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void FramesRoundTrip(bool preferNative)
    {
        var text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 8000).Select(i => $"row {i % 50} value\n")));
        var unit = text.AsSpan(0, 65536).ToArray();
        using var compressor = ZstdCodec.Create(3, preferNative);
        var output = new byte[70_000];
        Assert.True(compressor.TryCompress(unit, output, out int written));
        Assert.True(written < unit.Length / 4);
        using var decompressor = new ZstdSharp.Decompressor();
        Assert.Equal(unit, decompressor.Unwrap(output.AsSpan(0, written)).ToArray());
        Assert.False(compressor.TryCompress(Images.Pattern(65536, 1), output.AsSpan(0, 65535), out _)); // random data does not fit below the input size
    }

    [SkippableFact]
    public void LinuxHostsUseTheSystemLibrary()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists("/usr/lib/x86_64-linux-gnu/libzstd.so.1"), "no system libzstd here");
        Assert.True(ZstdCodec.UsesNativeLibrary);
    }
}
