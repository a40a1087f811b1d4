// Resize-VDisk: changes the virtual size of raw, qcow2 and VDI images (qemu-img resize). Growing keeps every guest byte
// and the new area reads as zeroes (-Preallocation reserves it); shrinking deletes the data past the new end, so it
// needs -Shrink and asks for confirmation as a ConfirmImpact High change would. qcow2 writes the new size last: a power
// cut leaves the old size, at worst with leaked clusters.
using System.Management.Automation;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Changes the virtual size of disk images.</summary>
[Cmdlet(VerbsCommon.Resize, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskInfo))]
public sealed class ResizeVDiskCommand : EncryptedImageInputCmdletBase
{
    /// <summary>The new virtual size in bytes (100GB works as typed).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Size")]
    public ulong SizeBytes { get; set; }

    /// <summary>Allows a size smaller than the image's; the data past the new end is deleted.</summary>
    [Parameter]
    public SwitchParameter Shrink { get; set; }

    /// <summary>With -Shrink: does not ask first (for scripts), as -Confirm:$false does.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How the new area is reserved when growing (default Off: sparse).</summary>
    [Parameter]
    public Preallocation Preallocation { get; set; }

    /// <summary>Format of the images; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Writes each resized image's VDiskInfo.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Checks the size before any image is touched.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (SizeBytes > CreateImage.MaxSize)
            ThrowTerminatingError(VDiskErrors.InvalidArgument($"Size {SizeBytes} bytes is too large: the largest disk is {CreateImage.MaxSize} bytes (8 EiB less 512 bytes).", null));
        if (Shrink && Preallocation != Preallocation.Off)
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-Preallocation can only be used when growing an image, not with -Shrink.", null));
    }

    /// <summary>Resizes one image after ShouldProcess (and, for a shrink, the confirmation a high-impact change gets).</summary>
    protected override void ProcessImage(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (ImageFormat?)null;
        long size = (long)SizeBytes;
        string action = Shrink
            ? $"Resize to {size} bytes ({HumanSize.Format(size)}), deleting the data past the new end if it is smaller"
            : $"Resize to {size} bytes ({HumanSize.Format(size)})";
        if (!ShouldProcess(fullPath, action) || (Shrink && !ConfirmHighImpact(Force, $"{action}: {fullPath}", "Shrink a disk image"))) return;
        var options = new ResizeOptions { Size = size, Shrink = Shrink, Preallocation = Preallocation, Format = format };
        if (Attempt(fullPath, () => RunWithProgress("Resize-VDisk", $"Resizing {System.IO.Path.GetFileName(fullPath)}", 0,
                (meter, cancel) => ResizeImage.Run(fullPath, options, meter, cancel))) is null) return;
        if (PassThru && Attempt(fullPath, () => RunCancellable(cancel => InspectImage.Run(fullPath, format, cancel))) is { } info)
            WriteObject(VDiskInfo.From(info));
    }
}
