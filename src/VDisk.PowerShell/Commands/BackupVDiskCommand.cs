// Backup-VDisk: backs up images into backup sets (issue 11): the first run writes a compressed full backup, later
// runs an incremental point with only what changed. -Destination names the set, or a folder that holds one set per
// image (named after it); a script block computes it per piped image.
using System.Management.Automation;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;

namespace VDisk.PowerShell.Commands;

/// <summary>Backs up disk images into backup sets.</summary>
[Cmdlet(VerbsData.Backup, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(VDiskBackupPoint))]
public sealed class BackupVDiskCommand : ImageInputCmdletBase
{
    /// <summary>
    /// The backup set's folder (created with any missing parents), or an existing folder that is not a set,
    /// which then holds one set per image, named after the image. A script block gets each piped image as $_.
    /// </summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = string.Empty;

    /// <summary>Writes a full backup, starting a new chain, even when the set has points.</summary>
    [Parameter]
    public SwitchParameter Full { get; set; }

    /// <summary>Compression of the point's clusters: Zlib (default; every qemu-img reads it) or Zstd (faster).</summary>
    [Parameter]
    public CompressionType CompressionType { get; set; }

    /// <summary>Stores the point's clusters uncompressed (faster, larger).</summary>
    [Parameter]
    public SwitchParameter NoCompression { get; set; }

    /// <summary>Format of the source image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat SourceFormat { get; set; }

    /// <summary>Reads an image a running VM has open for writing (the backup may then be inconsistent).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Waits for another backup or prune of the same set instead of failing.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Worker threads reading, hashing and compressing (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Backs up one image into its set and writes the new point.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (ResolveLiteralPath(Destination) is not { } destination) return;
        string setFolder = Directory.Exists(destination) && !BackupSet.IsSet(destination)
            ? System.IO.Path.Combine(destination, System.IO.Path.GetFileNameWithoutExtension(fullPath))
            : destination;
        string kind = Full ? "a full backup" : BackupSet.IsSet(setFolder) ? "an incremental backup" : "a full backup (new set)";
        if (!ShouldProcess(setFolder, $"Write {kind} of '{fullPath}'")) return;
        var options = new BackupOptions
        {
            Full = Full, Compress = !NoCompression, CompressionType = CompressionType, Force = Force, Wait = Wait, ThrottleLimit = ThrottleLimit,
            SourceFormat = IsBound(nameof(SourceFormat)) ? SourceFormat.ToEngine() : null,
        };
        string status = $"Backing up {System.IO.Path.GetFileName(fullPath)} to {setFolder}";
        var result = Attempt(fullPath, () => RunWithProgress("Backup-VDisk", status, 0, (meter, cancel) =>
            BackupImage.Run(fullPath, setFolder, options, new BackupProgressAdapter(meter), cancel)));
        if (result is null) return;
        foreach (string warning in result.Warnings) WriteWarning($"{setFolder}: {warning}");
        WriteObject(VDiskBackupPoint.From(result.SetPath, result.Point));
    }

    private sealed class BackupProgressAdapter(ProgressMeter meter) : IProgress<BackupProgress>
    {
        public void Report(BackupProgress value)
        {
            meter.Report(new VDisk.Engine.Operations.OperationProgress(value.BytesDone, value.BytesTotal));
            meter.Detail = $"read {HumanSize.Format(value.BytesRead)}, changed {HumanSize.Format(value.BytesChanged)}, written {HumanSize.Format(value.BytesWritten)}";
        }
    }
}
