// Set-VDisk: changes an image's settings; today its backing file (qemu-img rebase; issue 8 "Set-VDisk -BackingPath").
// A safe rebase copies into the image every cluster where the old and new backing content differ, so the guest view
// does not change; -BackingPath '' flattens. -Unsafe only rewrites the reference, which changes what the guest sees
// unless the images match, so it asks for confirmation as a ConfirmImpact High cmdlet would.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Changes the backing file of qcow2 images.</summary>
[Cmdlet(VerbsCommon.Set, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskInfo))]
public sealed class SetVDiskCommand : ImageInputCmdletBase
{
    /// <summary>The new backing image; '' for none (a safe rebase then flattens the image).</summary>
    [Parameter(Mandatory = true)]
    [AllowEmptyString]
    public string BackingPath { get; set; } = string.Empty;

    /// <summary>Format to record for the new backing image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat BackingFormat { get; set; }

    /// <summary>Only rewrites the backing reference, copying nothing (qemu-img rebase -u).</summary>
    [Parameter]
    public SwitchParameter Unsafe { get; set; }

    /// <summary>With -Unsafe: does not ask first (for scripts), as -Confirm:$false does.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Format of the images; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Worker threads reading and comparing (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Writes the image's VDiskInfo afterwards.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private string? _backingFull;

    /// <summary>Resolves -BackingPath against the PowerShell location before any image is read.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (BackingPath.Length == 0 && IsBound(nameof(BackingFormat)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-BackingFormat needs a -BackingPath that is not empty.", null));
        if (BackingPath.Length > 0) _backingFull = ResolveLiteralPathOrStop(BackingPath);
    }

    /// <summary>Rebases one image, after ShouldProcess (and, for -Unsafe, the confirmation a high-impact change gets).</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (!ShouldProcess(fullPath, Describe()) || (Unsafe && !ConfirmHighImpact(Force, $"{Describe()}: {fullPath}", "Unsafe rebase"))) return;
        var options = new RebaseOptions
        {
            BackingPath = _backingFull,
            BackingPathRelative = _backingFull != null && IsTypedRelative(BackingPath),
            BackingFormat = IsBound(nameof(BackingFormat)) ? BackingFormat.ToEngine() : null,
            Unsafe = Unsafe,
            Format = IsBound(nameof(Format)) ? Format.ToEngine() : null,
            ThrottleLimit = ThrottleLimit,
        };
        string status = $"Rebasing {System.IO.Path.GetFileName(fullPath)}";
        if (Attempt(fullPath, () => RunWithProgress("Set-VDisk", status, 0, (meter, cancel) => RebaseImage.Run(fullPath, options, meter, cancel))) is null) return;
        if (PassThru && Attempt(fullPath, () => RunCancellable(cancel => InspectImage.Run(fullPath, options.Format, cancel))) is { } info)
            WriteObject(VDiskInfo.From(info));
    }

    private string Describe() => (Unsafe.IsPresent, _backingFull) switch
    {
        (false, null) => "Copy the data of its backing chain into it and remove its backing file reference (flatten)",
        (false, _) => $"Rebase onto '{_backingFull}', copying in what differs so the guest view does not change",
        (true, null) => "Remove its backing file reference without copying data (unsafe: the guest view changes)",
        (true, _) => $"Point it at '{_backingFull}' without copying data (unsafe: the guest view changes unless the images match)",
    };
}
