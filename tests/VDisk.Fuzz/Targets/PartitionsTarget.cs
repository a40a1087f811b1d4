// Target "partitions": the input is a whole disk; the engine's MBR/GPT reader (protective MBR, both GPT headers and
// their entry arrays with CRC-32s, the EBR chain, the file system probes) reads it. Any partition it reports must lie
// at a non-negative offset with a non-negative size, and one that ends beyond the disk must carry a problem.
using VDisk.Engine.Partitions;

namespace VDisk.Fuzz.Targets;

/// <summary>Reads the input as a disk's partition table.</summary>
public sealed class PartitionsTarget : IFuzzTarget
{
    /// <inheritdoc/>
    public string Name => "partitions";

    /// <inheritdoc/>
    public FuzzOutcome Execute(byte[] input, AllocationMeter meter)
    {
        var table = meter.Call("PartitionReader.Read", () =>
            PartitionReader.Read("fuzz.img", input.Length, (offset, dest) => input.AsSpan(checked((int)offset), dest.Length).CopyTo(dest)));
        foreach (var p in table.Partitions)
        {
            if (p.Start < 0 || p.Size < 0) throw new FuzzFinding($"partition {p.Number}: start {p.Start}, size {p.Size}");
            if (p.Start > input.Length - p.Size && p.Problem is null && p.TableType != PartitionTableType.None)
                throw new FuzzFinding($"partition {p.Number} ends beyond the disk with no problem reported");
        }
        return new FuzzOutcome(null, input.Length, input.Length, table.Partitions.Count + 1);
    }
}
