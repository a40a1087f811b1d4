// Set-VDisk: changes an image's settings: its backing file (qemu-img rebase; issue 8 "Set-VDisk -BackingPath") or the
// passphrases of a LUKS-encrypted image (qemu-img amend encrypt.*; issue 13), one kind of change per command.
// A safe rebase copies into the image every cluster where the old and new backing content differ, so the guest view
// does not change; -BackingPath '' flattens. -Unsafe only rewrites the reference, which changes what the guest sees
// unless the images match, so it asks for confirmation as a ConfirmImpact High cmdlet would.
using System.Management.Automation;
using System.Security;
using VDisk.Engine.Crypto;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Changes the backing file of qcow2 images, or the passphrases of encrypted ones.</summary>
[Cmdlet(VerbsCommon.Set, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskInfo))]
public sealed class SetVDiskCommand : EncryptedImageInputCmdletBase
{
    /// <summary>The new backing image; '' for none (a safe rebase then flattens the image).</summary>
    [Parameter]
    [AllowEmptyString]
    public string BackingPath { get; set; } = string.Empty;

    /// <summary>A passphrase to add to a free key slot of a LUKS-encrypted image (unlock with -Passphrase).</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString? AddPassphrase { get; set; }

    /// <summary>A file whose first line is the passphrase to add.</summary>
    [Parameter]
    public string? AddPassphraseFile { get; set; }

    /// <summary>The key slot (0 to 7) for -AddPassphrase; by default the first free one.</summary>
    [Parameter]
    [ValidateRange(0, 7)]
    public int KeySlot { get; set; }

    /// <summary>How long deriving the added key should take, in milliseconds (default 2000, as qemu-img).</summary>
    [Parameter]
    [ValidateRange(1, 600000)]
    public int IterTimeMilliseconds { get; set; } = EncryptionInput.DefaultIterTimeMilliseconds;

    /// <summary>A passphrase to remove: every key slot it opens is cleared (the last active slot never is).</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString? RemovePassphrase { get; set; }

    /// <summary>A key slot (0 to 7) to clear, whatever passphrase it holds (the last active slot never is).</summary>
    [Parameter]
    [ValidateRange(0, 7)]
    public int RemoveKeySlot { get; set; }

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
    private Passphrase? _added, _removed;
    private bool ChangesKeys => IsBound(nameof(AddPassphrase)) || IsBound(nameof(AddPassphraseFile)) || IsBound(nameof(RemovePassphrase)) || IsBound(nameof(RemoveKeySlot));

    /// <summary>Resolves -BackingPath against the PowerShell location before any image is read.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (ChangesKeys == IsBound(nameof(BackingPath)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument(
                "Give one change: -BackingPath, or key slots (-AddPassphrase/-AddPassphraseFile, -RemovePassphrase, -RemoveKeySlot).", null));
        if (ChangesKeys)
        {
            bool adds = IsBound(nameof(AddPassphrase)) || IsBound(nameof(AddPassphraseFile));
            if (adds && (IsBound(nameof(RemovePassphrase)) || IsBound(nameof(RemoveKeySlot))))
                ThrowTerminatingError(VDiskErrors.InvalidArgument("Add and remove passphrases in separate commands, as qemu-img amend does.", null));
            if (IsBound(nameof(RemovePassphrase)) && IsBound(nameof(RemoveKeySlot)))
                ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -RemovePassphrase or -RemoveKeySlot, not both.", null));
            if (adds) _added = NewPassphrase(AddPassphrase, AddPassphraseFile);
            if (RemovePassphrase != null) _removed = ReadPassphrases(new[] { RemovePassphrase }, null)[0];
            return;
        }
        if (BackingPath.Length == 0 && IsBound(nameof(BackingFormat)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("-BackingFormat needs a -BackingPath that is not empty.", null));
        if (BackingPath.Length > 0) _backingFull = ResolveLiteralPathOrStop(BackingPath);
    }

    /// <summary>Rebases one image, after ShouldProcess (and, for -Unsafe, the confirmation a high-impact change gets).</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (ChangesKeys)
        {
            ChangeKeys(fullPath);
            return;
        }
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

    // Adds or removes one passphrase; the slots touched are reported as verbose output.
    private void ChangeKeys(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (VDisk.Engine.Core.ImageFormat?)null;
        string action = _added != null ? "Add a passphrase to a key slot"
            : _removed != null ? "Remove the key slots a passphrase opens" : $"Clear key slot {RemoveKeySlot}";
        if (!ShouldProcess(fullPath, action)) return;
        var slots = Attempt(fullPath, () => RunWithProgress("Set-VDisk", action, 0, (_, _) => _added != null
            ? new[] { KeySlotImage.Add(fullPath, _added, TimeSpan.FromMilliseconds(IterTimeMilliseconds), IsBound(nameof(KeySlot)) ? KeySlot : null, format) }
            : KeySlotImage.Remove(fullPath, _removed, IsBound(nameof(RemoveKeySlot)) ? RemoveKeySlot : null, format)));
        if (slots is null) return;
        WriteVerbose($"{fullPath}: {(_added != null ? "added to" : "removed")} key slot(s) {string.Join(", ", slots)}.");
        if (PassThru && Attempt(fullPath, () => RunCancellable(cancel => InspectImage.Run(fullPath, format, cancel))) is { } info)
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
