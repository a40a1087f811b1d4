// How a READ is answered once structured replies are negotiated (proto.md "Structured reply types":
// NBD_REPLY_TYPE_OFFSET_DATA and NBD_REPLY_TYPE_OFFSET_HOLE; "Request flags": NBD_CMD_FLAG_DF). The range is split
// by the image's block status: a run the image knows reads as zeroes (a zero cluster, or unallocated in the whole
// chain) becomes a hole chunk (12 bytes of payload instead of the zeroes), the rest data chunks. Holes shorter than
// MinHole are sent as data (a chunk header costs more than a few zeroes), and a reply never has more than MaxChunks
// chunks. With NBD_CMD_FLAG_DF the reply is one chunk: a hole when the whole range is one, data otherwise.
using VDisk.Engine.Core;

namespace VDisk.Engine.Nbd;

/// <summary>Splits a READ into data and hole chunks.</summary>
internal static class NbdReadPlan
{
    /// <summary>The shortest run sent as a hole chunk.</summary>
    public const int MinHole = 4096;
    /// <summary>The most chunks in one reply; a range more fragmented than this is sent as fewer, larger data runs.</summary>
    public const int MaxChunks = 64;

    /// <summary>One chunk of a reply: <paramref name="Length"/> bytes at <paramref name="Offset"/>, a hole or data.</summary>
    public readonly record struct Run(long Offset, int Length, bool Hole);

    /// <summary>The chunks that answer a READ of <paramref name="length"/> bytes at <paramref name="offset"/>, in order and covering it exactly.</summary>
    public static IReadOnlyList<Run> Plan(VirtualDisk disk, long offset, int length, bool dontFragment)
    {
        var runs = new List<Run>();
        long pos = offset, end = offset + length;
        while (pos < end)
        {
            var status = disk.GetBlockStatus(pos, end - pos);
            int run = (int)Math.Min(Math.Max(status.Length, 1), end - pos);
            bool hole = status.Kind != ExtentKind.Data;
            Add(runs, new Run(pos, run, hole));
            pos += run;
            if (runs.Count > 4 * MaxChunks) // too fragmented to be worth it: the rest is data
            {
                Add(runs, new Run(pos, (int)(end - pos), false));
                break;
            }
        }
        // Short holes join their neighbours as data.
        for (int i = 0; i < runs.Count; i++)
            if (runs[i].Hole && runs[i].Length < MinHole) runs[i] = runs[i] with { Hole = false };
        var merged = new List<Run>();
        foreach (var run in runs) Add(merged, run);
        if (dontFragment || merged.Count > MaxChunks)
            return new[] { new Run(offset, length, merged.Count == 1 && merged[0].Hole) };
        return merged;
    }

    /// <summary>Bytes of the structured reply for <paramref name="runs"/>: headers, offsets, hole lengths and data.</summary>
    public static int ReplySize(IReadOnlyList<Run> runs)
    {
        int size = 0;
        foreach (var run in runs) size += NbdProtocol.StructuredHeaderSize + (run.Hole ? 12 : 8 + run.Length);
        return size;
    }

    private static void Add(List<Run> runs, Run run)
    {
        if (run.Length <= 0) return;
        if (runs.Count > 0 && runs[^1].Hole == run.Hole && runs[^1].Offset + runs[^1].Length == run.Offset)
            runs[^1] = runs[^1] with { Length = runs[^1].Length + run.Length };
        else runs.Add(run);
    }
}
