// The incompressibility probe only skips data that would not have shrunk anyway.
using VDisk.Engine.Compression;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Core;

public class CompressibilityProbeTests
{
    [Fact]
    public void RandomDataLooksIncompressible() => Assert.True(CompressibilityProbe.LooksIncompressible(Images.Pattern(65536, 1), -12));

    [Fact]
    public void ZeroesTextAndMixedDataDoNot()
    {
        Assert.False(CompressibilityProbe.LooksIncompressible(new byte[65536], -12));
        var text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("some log line with words\n", 3000)));
        Assert.False(CompressibilityProbe.LooksIncompressible(text.AsSpan(0, 65536), -12));
        var mixed = Images.Pattern(65536, 2);
        Array.Clear(mixed, 20_000, 8_000); // one compressible stretch between random ones
        Assert.False(CompressibilityProbe.LooksIncompressible(mixed, -12));
    }

    [Fact]
    public void SmallUnitsAreNeverJudged() => Assert.False(CompressibilityProbe.LooksIncompressible(Images.Pattern(4096, 3), -12));
}
