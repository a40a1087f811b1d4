// Merge-VDiskChain: folds a backing chain together (issue 8 "Backing chains"). Commit mode (qemu-img commit) copies
// what the layers above a base decide into the base, then deletes those overlays unless -KeepOverlays; -Pull
// (qemu-img rebase -b "", virsh blockpull) copies what the top reads through its chain into the top and drops the
// backing reference, or with -BasePath keeps that base as its backing file. ConfirmImpact High: a commit rewrites
// the base and deletes files.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Commits overlays into their base image, or pulls backing data up into the top image.</summary>
[Cmdlet(VerbsData.Merge, "VDiskChain", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(VDiskChainNode))]
public sealed class MergeVDiskChainCommand : EncryptedImageInputCmdletBase
{
    /// <summary>The image in the chain to commit into (default: the top's backing image); with -Pull, the image to keep as the backing file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string BasePath { get; set; } = string.Empty;

    /// <summary>Pulls the backing chain's data up into the top image instead of committing the top down.</summary>
    [Parameter]
    public SwitchParameter Pull { get; set; }

    /// <summary>Keeps the committed overlays, unchanged (qemu-img commit -d), instead of deleting them.</summary>
    [Parameter]
    public SwitchParameter KeepOverlays { get; set; }

    /// <summary>Format of the top image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Worker threads reading the chain (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Writes the resulting chain, one VDiskChainNode per layer, top first.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private string? _baseFull;

    /// <summary>Checks the switches fit together and resolves -BasePath before any image is read.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (Pull && KeepOverlays)
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-KeepOverlays applies to a commit; -Pull deletes nothing.", null));
        if (IsBound(nameof(BasePath))) _baseFull = ResolveLiteralPathOrStop(BasePath);
    }

    /// <summary>Commits or pulls one chain, after ShouldProcess.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Pull) PullInto(fullPath);
        else Commit(fullPath);
    }

    private void Commit(string top)
    {
        var options = new CommitOptions
        {
            BasePath = _baseFull, KeepOverlays = KeepOverlays, ThrottleLimit = ThrottleLimit,
            Format = IsBound(nameof(Format)) ? Format.ToEngine() : null,
        };
        if (Attempt(top, () => RunCancellable(cancel => CommitImage.Plan(top, options, cancel))) is not { } plan) return;
        if (!ShouldProcess(top, Describe(plan))) return;
        string status = $"Committing {System.IO.Path.GetFileName(top)} into {System.IO.Path.GetFileName(plan.Base)}";
        if (Attempt(top, () => RunWithProgress("Merge-VDiskChain", status, 0, (meter, cancel) => CommitImage.Run(top, options, meter, cancel))) is not { } result) return;
        foreach (string file in result.Deleted) WriteVerbose($"Deleted '{file}'.");
        if (PassThru) WriteChain(KeepOverlays ? top : result.Base);
    }

    private void PullInto(string top)
    {
        string what = _baseFull is null
            ? "Copy the data of its backing chain into it and remove its backing file reference"
            : $"Copy the data of the layers above '{_baseFull}' into it and make '{_baseFull}' its backing file";
        if (!ShouldProcess(top, what)) return;
        var options = new RebaseOptions
        {
            BackingPath = _baseFull, BackingPathRelative = _baseFull != null && IsTypedRelative(BasePath), BackingMustBeInChain = true,
            ThrottleLimit = ThrottleLimit, Format = IsBound(nameof(Format)) ? Format.ToEngine() : null,
        };
        string status = $"Pulling data into {System.IO.Path.GetFileName(top)}";
        if (Attempt(top, () => RunWithProgress("Merge-VDiskChain", status, 0, (meter, cancel) => RebaseImage.Run(top, options, meter, cancel))) is null) return;
        if (PassThru) WriteChain(top);
    }

    private void WriteChain(string top)
    {
        if (Attempt(top, () => RunCancellable(cancel => InspectImage.Chain(top, null, cancel))) is not { } chain) return;
        foreach (var node in chain) WriteObject(VDiskChainNode.From(node));
    }

    private static string Describe(CommitPlan plan)
    {
        string overlays = string.Join("', '", plan.Overlays);
        string grow = plan.NewBaseSize > plan.BaseSize ? $" (growing it from {HumanSize.Format(plan.BaseSize)} to {HumanSize.Format(plan.NewBaseSize)})" : string.Empty;
        string after = plan.KeepOverlays ? ", keeping the overlays" : $", then delete '{overlays}'";
        return $"Commit '{overlays}' into '{plan.Base}'{grow}{after}";
    }
}
