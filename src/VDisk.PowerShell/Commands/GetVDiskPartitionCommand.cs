// Get-VDiskPartition: the MBR or GPT partitions of each image (sfdisk --json and blkid in one), read by the engine's
// own partition reader through backing chains, as VDiskPartition objects. Reads without locks, like Get-VDisk
// (qemu-img info -U), so a running VM's disk can be listed. Table problems that did not stop the reading (the
// backup GPT header used, an entry beyond the disk) are warnings; an unreadable table is a CorruptImage error.
using System.Management.Automation;
using VDisk.Engine.Partitions;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the partitions of disk images.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskPartition", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskPartition))]
public sealed class GetVDiskPartitionCommand : EncryptedImageInputCmdletBase
{
    /// <summary>Format of the images; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Writes the partitions of one image in number order, and a warning per table problem.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (Engine.Core.ImageFormat?)null;
        if (Attempt(fullPath, () => RunCancellable(_ => PartitionReader.ReadImage(fullPath, format))) is not { } table) return;
        foreach (var problem in table.Problems) WriteWarning($"{fullPath}: {problem}");
        if (table.Partitions.Count == 0) WriteVerbose($"{fullPath}: no partition table and no file system recognised.");
        foreach (var partition in table.Partitions) WriteObject(VDiskPartition.From(fullPath, table, partition));
    }
}
