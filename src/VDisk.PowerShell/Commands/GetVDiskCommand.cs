// Get-VDisk: what `qemu-img info` says about each image, as VDiskInfo objects.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets information about disk images.</summary>
[Cmdlet(VerbsCommon.Get, "VDisk", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskInfo))]
public sealed class GetVDiskCommand : ImageInputCmdletBase
{
    /// <summary>Writes the image's VDiskInfo, and a warning when its backing chain cannot be followed.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Attempt(fullPath, () => InspectImage.Run(fullPath)) is not { } info) return;
        if (info.ChainProblem is { } problem) WriteWarning(problem);
        WriteObject(VDiskInfo.From(info));
    }
}
