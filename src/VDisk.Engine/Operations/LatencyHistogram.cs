// Request latencies of a performance run in a log-linear histogram (HdrHistogram's layout): 32 buckets per power
// of two, so recording is O(1) with fixed memory whatever the run's length and a percentile is within about 3 %.
// One histogram per worker thread, merged at the end, so recording takes no lock.
using System.Numerics;

namespace VDisk.Engine.Operations;

/// <summary>Counts values (Stopwatch ticks) in log-linear buckets. Not thread-safe: one per thread, then <see cref="Add"/>.</summary>
internal sealed class LatencyHistogram
{
    private const int SubBits = 5, SubCount = 1 << SubBits;
    private readonly long[] _counts = new long[(64 - SubBits + 1) * SubCount];

    /// <summary>Values recorded.</summary>
    public long Count { get; private set; }

    /// <summary>Sum of the values recorded.</summary>
    public long Sum { get; private set; }

    /// <summary>Records one value (negative values count as 0).</summary>
    public void Record(long value)
    {
        value = Math.Max(0, value);
        _counts[Index(value)]++;
        Count++;
        Sum += value;
    }

    /// <summary>Adds every value of <paramref name="other"/>.</summary>
    public void Add(LatencyHistogram other)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        Count += other.Count;
        Sum += other.Sum;
    }

    /// <summary>The smallest bucket bound that at least <paramref name="fraction"/> of the values stay within; 0 when empty.</summary>
    public long Percentile(double fraction)
    {
        long rank = (long)Math.Ceiling(fraction * Count), seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank && seen > 0) return UpperBound(i);
        }
        return 0;
    }

    // Values below SubCount have a bucket each; above, the top SubBits+1 bits choose the bucket.
    internal static int Index(long value)
    {
        if (value < SubCount) return (int)value;
        int shift = 63 - BitOperations.LeadingZeroCount((ulong)value) - SubBits;
        return (shift + 1) * SubCount + (int)(value >> shift) - SubCount;
    }

    internal static long UpperBound(int index)
    {
        if (index < SubCount) return index;
        int shift = index / SubCount - 1;
        return ((long)(SubCount + index % SubCount + 1) << shift) - 1;
    }
}
