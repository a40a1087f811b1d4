// The fuzz targets by name, and the one rule every target shares: an input may be refused only with the
// engine's VDiskException (NotAnImage, Corrupt or Unsupported). Any other exception, a broken invariant of
// the engine's answers (FuzzFinding) or an engine call that allocates more than AllocationBudget escapes
// as a crash, to afl-fuzz (Program.cs) and to the regression tests alike; only the known crashes listed in
// OpenFindings.cs are reported in the outcome instead.
using VDisk.Engine.Core;
using VDisk.Fuzz.Targets;

namespace VDisk.Fuzz;

/// <summary>How one input ended: accepted (opened, walked), refused with a clean engine error, or a known open finding.</summary>
/// <param name="Rejection">The engine's refusal, or null when the input was accepted.</param>
/// <param name="VirtualSize">Guest size of the opened image (0 when refused or when the target has no disk).</param>
/// <param name="BytesWalked">Guest bytes the mapping walk covered, from offset 0.</param>
/// <param name="Runs">Mapping runs (or parsed records) the target visited.</param>
public sealed record FuzzOutcome(VDiskException? Rejection, long VirtualSize, long BytesWalked, int Runs)
{
    /// <summary>True when the engine accepted the input.</summary>
    public bool Accepted => Rejection is null && OpenFinding is null;

    /// <summary>The id of the known, unfixed crash the input triggered (<see cref="OpenFindings"/>), or null.</summary>
    public string? OpenFinding { get; init; }

    /// <summary>An input the engine refused.</summary>
    public static FuzzOutcome Rejected(VDiskException e) => new(e, 0, 0, 0);
}

/// <summary>An engine answer that breaks the contract the target checks: a crash, like an unexpected exception.</summary>
public sealed class FuzzFinding : Exception
{
    /// <summary>Creates a finding with a description of the broken rule.</summary>
    public FuzzFinding(string message) : base(message) { }
}

/// <summary>One parser under fuzzing.</summary>
public interface IFuzzTarget
{
    /// <summary>The name used on the command line and for the regression folder.</summary>
    string Name { get; }

    /// <summary>Runs the parser over <paramref name="input"/>; throws on a crash, returns the outcome otherwise.</summary>
    FuzzOutcome Execute(byte[] input, AllocationMeter meter);
}

/// <summary>The registry of targets and the shared entry point.</summary>
public static class FuzzTargets
{
    /// <summary>
    /// Most bytes one engine call (an open, one Map, one compressed read) may allocate. The largest legitimate call is
    /// opening a qcow2 image: its L1 table (at most 32 MiB, read as bytes and again as entries) and refcount table (at
    /// most 8 MiB, twice) come to about 82 MiB; anything beyond 96 MiB is sized from an unchecked field.
    /// </summary>
    public const long AllocationBudget = 96L << 20;

    /// <summary>Largest input the targets take (afl-fuzz's own limit); longer inputs are cut.</summary>
    public const int MaxInputBytes = 1 << 20;

    private static readonly VDiskErrorKind[] CleanRefusals = { VDiskErrorKind.NotAnImage, VDiskErrorKind.Corrupt, VDiskErrorKind.Unsupported };

    /// <summary>Every target, in the order the smoke run uses.</summary>
    public static IReadOnlyList<IFuzzTarget> All { get; } = new IFuzzTarget[]
    {
        new Qcow2Target(), new VmdkSparseTarget(), new VmdkDescriptorTarget(), new VdiTarget(), new PartitionsTarget(),
    };

    /// <summary>The target named <paramref name="name"/>.</summary>
    public static IFuzzTarget Get(string name) => All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"unknown fuzz target '{name}' (targets: {string.Join(", ", All.Select(t => t.Name))})", nameof(name));

    /// <summary>
    /// Runs target <paramref name="name"/> over <paramref name="input"/>. Returns the outcome when the engine accepted the
    /// input or refused it cleanly; every other failure propagates (that is what afl-fuzz records as a crash).
    /// </summary>
    public static FuzzOutcome Run(string name, ReadOnlySpan<byte> input)
    {
        var target = Get(name);
        byte[] bytes = input[..Math.Min(input.Length, MaxInputBytes)].ToArray();
        try
        {
            return target.Execute(bytes, new AllocationMeter(AllocationBudget));
        }
        catch (VDiskException e) when (CleanRefusals.Contains(e.Kind))
        {
            return FuzzOutcome.Rejected(e);
        }
    }
}
