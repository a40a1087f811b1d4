// The walk every disk target makes over an opened image: Map from guest offset 0 to the end, reading a little
// of each compressed run (which inflates the cluster), then the last byte on its own. It checks the mapping
// contract (IImageDriver.Map): a run is 1 to maxLength bytes, and data runs name a storage and a host offset.
// The walk stops early, as a choice and not as a finding, after MaxRuns runs or once the input's allocations
// pass WalkAllocationLimit, so a huge sparse disk costs at most a few milliseconds.
using VDisk.Engine.Core;

namespace VDisk.Fuzz;

/// <summary>A bounded, checked walk over the mapping of an image.</summary>
public static class MappingWalk
{
    /// <summary>Most Map calls per walk.</summary>
    public const int MaxRuns = 2048;
    /// <summary>The walk stops once the input has allocated this much in total (metadata tables read so far).</summary>
    public const long WalkAllocationLimit = 64L << 20;
    /// <summary>Most compressed runs read per walk.</summary>
    public const int MaxCompressedReads = 32;
    private const int ReadBytes = 4096;

    /// <summary>Walks <paramref name="driver"/>; returns (guest bytes covered from 0, runs).</summary>
    public static (long Bytes, int Runs) Walk(IImageDriver driver, AllocationMeter meter)
    {
        long size = driver.VirtualSize;
        int cluster = driver.ClusterSize;
        if (size < 0 || cluster <= 0 || (cluster & (cluster - 1)) != 0)
            throw new FuzzFinding($"the driver reports virtual size {size} and cluster size {cluster}.");
        var buffer = new byte[ReadBytes];
        long position = 0;
        int runs = 0, compressedReads = 0;
        while (position < size && runs < MaxRuns && meter.Total < WalkAllocationLimit)
        {
            long at = position, rest = size - position;
            var run = meter.Call($"Map({at}, {rest})", () => driver.Map(at, rest));
            Check(run, at, rest);
            if (run.Kind == ExtentKind.Compressed && compressedReads++ < MaxCompressedReads)
            {
                int n = (int)Math.Min(run.Length, ReadBytes);
                meter.Call($"ReadCompressed({at})", () => driver.ReadCompressed(at, buffer.AsSpan(0, n)));
            }
            position += run.Length;
            runs++;
        }
        if (size > 0)
        {
            long last = size - 1;
            var tail = meter.Call($"Map({last}, 1)", () => driver.Map(last, 1));
            Check(tail, last, 1);
        }
        return (position, runs);
    }

    private static void Check(Mapping run, long offset, long maxLength)
    {
        if (run.Length <= 0 || run.Length > maxLength)
            throw new FuzzFinding($"Map({offset}, {maxLength}) returned a {run.Kind} run of {run.Length} bytes.");
        if (run.Kind == ExtentKind.Data && (run.Storage is null || run.HostOffset < 0))
            throw new FuzzFinding($"Map({offset}, {maxLength}) returned a data run at host offset {run.HostOffset} in storage '{run.Storage?.Name}'.");
    }
}
