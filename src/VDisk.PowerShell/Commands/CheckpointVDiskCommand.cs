// Checkpoint-VDisk: takes a snapshot of disk images before a risky change. By default an internal snapshot inside
// the qcow2 image (qemu-img snapshot -c), written as a VDiskSnapshot; with -External, a new qcow2 overlay over the
// image (-OverlayPath) that takes the writes from then on while the image stays as it is, written as a VDiskInfo.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Takes a snapshot of disk images.</summary>
[Cmdlet(VerbsData.Checkpoint, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskSnapshot), typeof(VDiskInfo))]
public sealed class CheckpointVDiskCommand : ImageInputCmdletBase
{
    /// <summary>The internal snapshot's name; by default "vdisk-" and the local date and time.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Takes an external snapshot: a new qcow2 overlay at -OverlayPath over the image.</summary>
    [Parameter]
    public SwitchParameter External { get; set; }

    /// <summary>Where the overlay of an external snapshot goes (taken literally).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? OverlayPath { get; set; }

    /// <summary>Replaces an existing file at -OverlayPath (never one a VM has open).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    private string? _overlayFull;
    private int _images;

    /// <summary>Checks that the options fit together before any image is touched.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (External && OverlayPath is null)
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-External needs -OverlayPath: the file the new overlay is written to.", null));
        if (!External && (OverlayPath is not null || Force))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-OverlayPath and -Force belong to -External snapshots.", null));
        if (External && Name is not null)
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-Name names internal snapshots; an external snapshot is named by -OverlayPath.", null));
        if (OverlayPath is not null) _overlayFull = ResolveLiteralPathOrStop(OverlayPath);
    }

    /// <summary>Takes the snapshot of one image.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (_overlayFull is { } overlay)
        {
            if (++_images > 1)
            {
                WriteError(VDiskErrors.AmbiguousDestination(overlay, _images));
                return;
            }
            if (!ShouldProcess(overlay, $"Create a qcow2 overlay backed by {fullPath} (external snapshot)")) return;
            var created = Attempt(fullPath, () => RunWithProgress("Checkpoint-VDisk", $"Creating {overlay}", 0, (_, cancel) =>
            {
                var result = SnapshotImage.CreateExternal(fullPath, overlay, Force, cancel);
                return Tuple.Create(result, InspectImage.Run(overlay, Engine.Core.ImageFormat.Qcow2, cancel));
            }));
            if (created is null) return;
            foreach (string warning in created.Item1.Warnings) WriteWarning($"{overlay}: {warning}");
            WriteObject(VDiskInfo.From(created.Item2));
            return;
        }
        string name = Name ?? $"vdisk-{DateTime.Now:yyyyMMdd-HHmmss}";
        if (!ShouldProcess(fullPath, $"Take internal snapshot '{name}'")) return;
        if (Attempt(fullPath, () => RunWithProgress("Checkpoint-VDisk", $"Taking snapshot '{name}' of {fullPath}", 0,
                (_, _) => SnapshotImage.Create(fullPath, name))) is { } snapshot)
            WriteObject(VDiskSnapshot.From(snapshot));
    }
}
