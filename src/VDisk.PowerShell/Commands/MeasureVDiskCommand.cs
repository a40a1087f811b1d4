// Measure-VDisk: the space a new image needs before a conversion (qemu-img measure): for each input image, the file
// size a -DestinationFormat copy of it (its whole chain, flattened) takes, and the size with every cluster allocated;
// or, with -SizeBytes and no image, the same for an empty image of that size. The qcow2 options are New-VDisk's.
using System.Management.Automation;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Measures the space a new disk image needs.</summary>
[Cmdlet(VerbsDiagnostic.Measure, "VDisk", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskMeasurement))]
public sealed class MeasureVDiskCommand : ImageInputCmdletBase
{
    private const string SizeSet = "Size";

    /// <summary>Measures an empty image of this many bytes instead of an existing image (20GB works as typed).</summary>
    [Parameter(Mandatory = true, ParameterSetName = SizeSet)]
    [Alias("Size")]
    public ulong SizeBytes { get; set; }

    /// <summary>The format of the new image: Raw (the default, as in qemu-img) or Qcow2.</summary>
    [Parameter]
    public VDiskFormat DestinationFormat { get; set; } = VDiskFormat.Raw;

    /// <summary>qcow2 cluster size in bytes (default 64 KiB).</summary>
    [Parameter]
    public uint ClusterSizeBytes { get; set; } = 65536;

    /// <summary>qcow2 refcount entry width in bits (default 16).</summary>
    [Parameter]
    [ValidateSet("1", "2", "4", "8", "16", "32", "64")]
    public int RefcountBits { get; set; } = 16;

    /// <summary>qcow2 version: '0.10' or '1.1' (the default).</summary>
    [Parameter]
    [ValidateSet("0.10", "1.1")]
    public string Compat { get; set; } = "1.1";

    /// <summary>qcow2 preallocation of the new image (Falloc and Full count every cluster as required).</summary>
    [Parameter]
    public Preallocation Preallocation { get; set; }

    /// <summary>The new qcow2 image will have a backing file (every data cluster then counts as required).</summary>
    [Parameter]
    public SwitchParameter WithBackingFile { get; set; }

    /// <summary>Format of the input images; by default it is probed.</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    public VDiskFormat SourceFormat { get; set; }

    /// <summary>Measures an internal snapshot of each input (qemu-img measure -l), by id or name.</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    [ValidateNotNullOrEmpty]
    public string? Snapshot { get; set; }

    private static readonly string[] Qcow2OnlyParameters =
        { nameof(ClusterSizeBytes), nameof(RefcountBits), nameof(Compat), nameof(Preallocation), nameof(WithBackingFile) };

    /// <summary>Checks the options before any image is read.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        var qcow2Only = Qcow2OnlyParameters.Where(IsBound).ToArray();
        if (DestinationFormat != VDiskFormat.Qcow2 && qcow2Only.Length > 0)
            ThrowTerminatingError(VDiskErrors.InvalidArgument($"-{string.Join(", -", qcow2Only)} apply to a qcow2 destination only, not {DestinationFormat}.", null));
        if (ClusterSizeBytes > int.MaxValue) ThrowTerminatingError(VDiskErrors.InvalidArgument(ClusterSizeProblem(ClusterSizeBytes), null));
        if (SizeBytes > CreateImage.MaxSize)
            ThrowTerminatingError(VDiskErrors.InvalidArgument($"-SizeBytes {SizeBytes} is too large: the largest disk is {CreateImage.MaxSize} bytes (8 EiB less 512 bytes).", null));
    }

    /// <summary>Measures each input image, or the size alone.</summary>
    protected override void ProcessRecord()
    {
        if (ParameterSetName != SizeSet)
        {
            base.ProcessRecord();
            return;
        }
        var options = Options();
        long size = (long)SizeBytes;
        string target = $"{DestinationFormat} image of {size} bytes";
        if (Attempt(target, () => RunCancellable(cancel => MeasureImage.Run(null, size, options, cancel))) is { } result)
            WriteObject(From(null, size, result));
    }

    /// <summary>Measures one input image.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var options = Options();
        if (Attempt(fullPath, () => RunCancellable(cancel => Tuple.Create(MeasureImage.Run(fullPath, null, options, cancel),
                InspectImage.Run(fullPath, options.SourceFormat, cancel).VirtualSize))) is { } measured)
            WriteObject(From(fullPath, measured.Item2, measured.Item1));
    }

    private MeasureOptions Options() => new()
    {
        DestinationFormat = DestinationFormat.ToEngine(),
        ClusterSize = (int)ClusterSizeBytes,
        RefcountBits = RefcountBits,
        Compat = Compat,
        Preallocation = Preallocation,
        HasBackingFile = WithBackingFile,
        SourceFormat = IsBound(nameof(SourceFormat)) ? SourceFormat.ToEngine() : null,
        Snapshot = Snapshot,
    };

    private VDiskMeasurement From(string? path, long size, MeasureResult r) => new()
    {
        Path = path,
        DestinationFormat = DestinationFormat,
        VirtualSize = size,
        RequiredBytes = r.RequiredBytes,
        FullyAllocatedBytes = r.FullyAllocatedBytes,
        BitmapsBytes = r.BitmapsBytes,
    };
}
