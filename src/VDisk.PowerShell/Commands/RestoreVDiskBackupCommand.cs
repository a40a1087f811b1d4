// Restore-VDiskBackup: restores a point of a backup set to a standalone image in any format, every block checked
// against the manifest's hashes as it is written; or, with -Instant, a thin qcow2 overlay on the point, usable at once.
using System.Management.Automation;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Restores backup points.</summary>
[Cmdlet(VerbsData.Restore, "VDiskBackup", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskInfo))]
public sealed class RestoreVDiskBackupCommand : EncryptedBackupSetCmdletBase
{
    /// <summary>Restores the newest point taken at or before this time (local time unless it says otherwise); by default the newest point.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public DateTime Time { get; set; }

    /// <summary>The image to write.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string DestinationPath { get; set; } = string.Empty;

    /// <summary>Format to write; by default from the -DestinationPath extension (as New-VDisk), else qcow2.</summary>
    [Parameter]
    public VDiskFormat DestinationFormat { get; set; }

    /// <summary>Variant of the output: a VMDK subformat, or Dynamic / Static for VDI.</summary>
    [Parameter]
    public VDiskSubformat Subformat { get; set; }

    /// <summary>Makes a thin qcow2 overlay on the point instead of a copy: usable at once; Merge-VDiskChain -Pull makes it standalone later.</summary>
    [Parameter]
    public SwitchParameter Instant { get; set; }

    /// <summary>Overwrites an existing destination (never one a running VM has open).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Worker threads (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Writes the restored image's VDiskInfo.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private int _restored;

    /// <summary>Restores the chosen point of the set (the named point's image, or the newest at or before -Time).</summary>
    protected override void ProcessSet(string setFolder, string? pointImage)
    {
        if (++_restored > 1)
        {
            WriteError(VDiskErrors.AmbiguousDestination(DestinationPath, _restored));
            return;
        }
        if (ResolveLiteralPath(DestinationPath) is not { } destination) return;
        var format = IsBound(nameof(DestinationFormat)) ? DestinationFormat : VDiskFormatConversion.FromExtension(DestinationPath);
        if (IsBound(nameof(Subformat)) && Subformat.MismatchWith(format) is { } mismatch)
            ThrowTerminatingError(VDiskErrors.InvalidArgument(mismatch, DestinationPath));
        DateTimeOffset? time = IsBound(nameof(Time)) ? new DateTimeOffset(Time.Kind == DateTimeKind.Unspecified ? DateTime.SpecifyKind(Time, DateTimeKind.Local) : Time) : null;
        if (pointImage != null)
        {
            var points = Attempt(setFolder, () => RunCancellable(cancel =>
            {
                using var set = BackupSet.OpenForReading(setFolder, Wait, cancel);
                return set.Points.ToList();
            }));
            if (points is null) return;
            var point = points.FirstOrDefault(p => System.IO.Path.Combine(setFolder, p.File) == pointImage);
            if (point is null)
            {
                WriteError(VDiskErrors.FromException(new VDiskException(VDiskErrorKind.BackupPointNotFound, pointImage,
                    $"{pointImage} is not a restore point of the set {setFolder}."), pointImage));
                return;
            }
            time = point.Time;
        }
        string what = Instant ? "Create an instant-restore overlay" : File.Exists(destination) && Force ? "Overwrite with the restored image" : "Restore the image";
        string which = time is { } t ? $"the point at or before {t.LocalDateTime}" : "the newest point";
        if (!ShouldProcess(destination, $"{what} from {which} of the backup set '{setFolder}'")) return;
        var options = new RestoreOptions
        {
            Time = time, DestinationFormat = format.ToEngine(), Subformat = IsBound(nameof(Subformat)) ? Subformat.ToEngine() : ImageSubformat.Default,
            Instant = Instant, Overwrite = Force, Wait = Wait, ThrottleLimit = ThrottleLimit,
        };
        var result = Attempt(setFolder, () => RunWithProgress("Restore-VDiskBackup", $"Restoring {System.IO.Path.GetFileName(destination)} from {setFolder}", 0,
            (meter, cancel) => RestoreBackup.Run(setFolder, destination, options, meter, cancel)));
        if (result is null) return;
        WriteVerbose($"Restored the point of {result.Point.Time.LocalDateTime} to '{destination}' ({result.BlocksVerified} blocks checked against the manifest).");
        if (PassThru && Attempt(destination, () => RunCancellable(cancel => InspectImage.Run(destination, options.DestinationFormat, cancel))) is { } info)
            WriteObject(VDiskInfo.From(info));
    }
}
