// Get-VDisk: what `qemu-img info` says about each image, as VDiskInfo objects. -Format declares the format
// instead of probing it (qemu-img info -f).
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets information about disk images.</summary>
[Cmdlet(VerbsCommon.Get, "VDisk", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskInfo))]
public sealed class GetVDiskCommand : ImageInputCmdletBase
{
    /// <summary>Format of the images; by default it is probed from their content.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Writes the image's VDiskInfo, and a warning when its backing chain cannot be followed.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (Engine.Core.ImageFormat?)null;
        if (Attempt(fullPath, () => RunCancellable(cancel => InspectImage.Run(fullPath, format, cancel))) is not { } info) return;
        if (info.ChainProblem is { } problem) WriteWarning(problem);
        WriteObject(VDiskInfo.From(info));
    }
}
