# Issue 7, hostile input, through the cmdlets: a malformed backing name is an error about that image and the
# pipeline goes on; an unexpected exception is an InternalError about that image; FIFOs and devices are refused
# at once; empty disks are clean for qemu-img; a probed descriptor does not make VDisk read host files; -PassThru
# describes what was written; qcow2 sizes that are not whole sectors are rounded down as QEMU does.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # An overlay of base.qcow2 whose stored backing name gets a NUL byte in place of its third character.
    function New-NulBackingOverlay([string] $Folder) {
        $null = New-VDisk -Path "$Folder/base.qcow2" -SizeBytes 1MB
        $overlay = (New-VDisk -Path "$Folder/nul.qcow2" -BackingPath "$Folder/base.qcow2").Path
        $header = [System.IO.File]::ReadAllBytes($overlay)
        $nameOffset = [System.Buffers.Binary.BinaryPrimitives]::ReadUInt64BigEndian([byte[]]$header[8..15])
        Set-FileBytes $overlay ($nameOffset + 2) ([byte[]]@(0))
        $overlay
    }

    # Runs a command in a new runspace with the module and stops it after $Seconds; returns its output, errors and
    # whether it finished (a regression that blocks must fail the test, not hang the run).
    function Invoke-WithTimeout([scriptblock] $Script, [int] $Seconds = 10) {
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$((Get-Module VDisk).Path)'").AddStatement().AddScript($Script)
        $async = $ps.BeginInvoke()
        $finished = $async.AsyncWaitHandle.WaitOne($Seconds * 1000)
        if (-not $finished) { $null = $ps.BeginStop($null, $null); return [pscustomobject]@{ Finished = $false } }
        [pscustomobject]@{ Finished = $true; Output = @($ps.EndInvoke($async)); Errors = @($ps.Streams.Error) }
    }
}

Describe 'A backing file name no file can have' {
    BeforeAll {
        $folder = New-TestFolder
        $nul = New-NulBackingOverlay $folder
        $null = New-VDisk -Path "$folder/zz-good.qcow2" -SizeBytes 1MB
    }

    It '<Cmdlet> reports it as CorruptImage about that image and goes on with the rest, even with -ErrorAction SilentlyContinue' -ForEach @(
        @{ Cmdlet = 'Get-VDisk'; Extra = @{} }
        @{ Cmdlet = 'Get-VDiskChain'; Extra = @{} }
        @{ Cmdlet = 'Convert-VDisk'; Extra = @{ DestinationFormat = 'Raw'; PassThru = $true } }
        @{ Cmdlet = 'Compare-VDisk'; Extra = @{ DifferencePath = 'zz-good.qcow2'; Quiet = $true } }
    ) {
        if ($Extra.DifferencePath) { $Extra.DifferencePath = Join-Path $folder $Extra.DifferencePath }
        $results = Get-ChildItem -LiteralPath $folder -Filter '*.qcow2' | & $Cmdlet @Extra -ErrorAction SilentlyContinue -ErrorVariable err
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'CorruptImage' $Cmdlet)
        $err[0].TargetObject | Should -Be $nul
        "$($err[0])" | Should -Match 'NUL'
        "$($err[0])" | Should -BeLike "*$nul*"
        @($results).Count | Should -BeGreaterOrEqual 2 # base.qcow2 and zz-good.qcow2, before and after it
    }

    It 'is an InvalidArgument error when typed as a path, and the other paths are processed' {
        $result = Get-VDisk -LiteralPath "$folder/ba`0d.qcow2", "$folder/zz-good.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue
        $result.Path | Should -Be "$folder/zz-good.qcow2"
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'Get-VDisk')
    }
}

Describe 'An unexpected exception from one image' {
    BeforeAll {
        # A cmdlet on VDisk's own base whose engine work throws for *.bug files and can block until stopped.
        $source = @'
using System.Management.Automation;
using VDisk.PowerShell.Commands;
[Cmdlet("Test", "VDiskBase")]
public sealed class TestVDiskBaseCommand : ImageInputCmdletBase
{
    [Parameter] public SwitchParameter Block { get; set; }
    protected override void ProcessImage(string fullPath)
    {
        var result = Attempt(fullPath, () => RunCancellable(cancel =>
        {
            if (Block) System.Threading.Tasks.Task.Delay(30000).Wait(); // stuck, deaf to the token, like a blocked system call
            if (fullPath.EndsWith(".bug")) throw new System.IndexOutOfRangeException("simulated bug");
            return fullPath;
        }));
        if (result != null) WriteObject(result);
    }
}
'@
        $engine = Join-Path (Split-Path (Get-Module VDisk).Path) 'VDisk.Engine.dll'
        $commands = Join-Path (Split-Path (Get-Module VDisk).Path) 'VDisk.PowerShell.dll'
        $type = Add-Type -TypeDefinition $source -ReferencedAssemblies $commands, $engine, ([psobject].Assembly.Location) -PassThru -IgnoreWarnings -WarningAction SilentlyContinue
        Import-Module -Assembly $type[0].Assembly
        $folder = New-TestFolder
        'a', 'b.bug', 'c' | ForEach-Object { Set-Content -LiteralPath "$folder/$_" -Value $_ }
    }

    It 'is an InternalError about that image, with the exception and its stack trace, and the pipeline goes on' {
        $result = Test-VDiskBase -Path "$folder/*" -ErrorVariable err -ErrorAction SilentlyContinue
        $result | Should -Be @("$folder/a", "$folder/c")
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InternalError,TestVDiskBaseCommand'
        $err[0].CategoryInfo.Category | Should -Be 'NotSpecified'
        $err[0].TargetObject | Should -Be "$folder/b.bug"
        $err[0].Exception | Should -BeOfType [System.IndexOutOfRangeException]
        $err[0].Exception.StackTrace | Should -Not -BeNullOrEmpty
        "$($err[0])" | Should -BeLike '*This is a bug in VDisk*'
    }

    It 'stops the command with -ErrorAction Stop' {
        { Test-VDiskBase -Path "$folder/*" -ErrorAction Stop } | Should -Throw -ErrorId 'InternalError,TestVDiskBaseCommand'
    }

    It 'is stopped at once by Ctrl+C even while the engine work is stuck' {
        $ps = [powershell]::Create([System.Management.Automation.RunspaceMode]::NewRunspace)
        $null = $ps.AddCommand('Import-Module').AddParameter('Assembly', $type[0].Assembly).AddStatement().AddCommand('Test-VDiskBase').AddParameter('Path', "$folder/a").AddParameter('Block')
        $async = $ps.BeginInvoke()
        Start-Sleep -Milliseconds 300
        $watch = [System.Diagnostics.Stopwatch]::StartNew()
        $ps.Stop()
        $null = $async.AsyncWaitHandle.WaitOne(2000) # the result is marked complete just after Stop returns
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 2
        $async.IsCompleted | Should -BeTrue
    }
}

Describe 'FIFOs, sockets and devices' {
    BeforeAll {
        $folder = New-TestFolder
        & mkfifo "$folder/pipe.img"
        $null = New-VDisk -Path "$folder/base.qcow2" -SizeBytes 1MB
        $null = New-VDisk -Path "$folder/overlay.qcow2" -BackingPath "$folder/base.qcow2"
        Remove-Item -LiteralPath "$folder/base.qcow2"
        & mkfifo "$folder/base.qcow2"
        Set-Content -LiteralPath "$folder/disk.vmdk" -NoNewline -Value "# Disk DescriptorFile`nversion=1`nCID=12345678`nparentCID=ffffffff`ncreateType=`"monolithicFlat`"`nRW 2048 FLAT `"pipe.img`" 0`n"
    }

    It 'refuses <What> at once with NotAnImage naming the FIFO' -ForEach @(
        @{ What = 'a FIFO as the image'; Script = 'Get-VDisk -LiteralPath $args[0]'; Image = 'pipe.img'; Target = 'pipe.img' }
        @{ What = 'a FIFO as the backing file'; Script = 'Get-VDiskChain -LiteralPath $args[0]'; Image = 'overlay.qcow2'; Target = 'base.qcow2' }
        @{ What = 'a FIFO as a VMDK extent'; Script = 'Convert-VDisk -LiteralPath $args[0] -DestinationFormat Raw'; Image = 'disk.vmdk'; Target = 'pipe.img' }
        @{ What = '/dev/zero'; Script = 'Compare-VDisk -LiteralPath /dev/zero -DifferencePath $args[0]'; Image = 'overlay.qcow2'; Target = '/dev/zero' }
    ) {
        $script = [scriptblock]::Create("& { $Script } '$folder/$Image'")
        $run = Invoke-WithTimeout $script
        $run.Finished | Should -BeTrue -Because 'VDisk must not open a FIFO'
        $run.Errors.Count | Should -Be 1
        $run.Errors[0].FullyQualifiedErrorId | Should -BeLike 'NotAnImage,*'
        $run.Errors[0].TargetObject | Should -Be $(if ($Target.StartsWith('/')) { $Target } else { "$folder/$Target" })
    }

    It 'lists a folder holding a FIFO, reporting the FIFO and the other images' {
        $run = Invoke-WithTimeout ([scriptblock]::Create("Get-ChildItem -LiteralPath '$folder' | Get-VDisk -WarningAction SilentlyContinue"))
        $run.Finished | Should -BeTrue
        ($run.Output.Path | Split-Path -Leaf) | Should -Be 'overlay.qcow2' -Because 'its backing FIFO is only a warning for Get-VDisk'
        ($run.Errors.TargetObject | Split-Path -Leaf | Sort-Object) | Should -Be @('base.qcow2', 'pipe.img', 'pipe.img')
    }
}

Describe 'Disks of size 0' {
    BeforeAll { $folder = New-TestFolder }

    It 'New-VDisk -SizeBytes 0 -Format <Format> <Compat> writes an image qemu-img check finds clean' -Skip:$SkipQemu -ForEach @(
        @{ Format = 'Qcow2'; Compat = '1.1' }
        @{ Format = 'Qcow2'; Compat = '0.10' }
        @{ Format = 'Vdi'; Compat = $null }
    ) {
        $extra = if ($Compat) { @{ Compat = $Compat } } else { @{} }
        $info = New-VDisk -Path "$folder/empty-$Compat.$Format" -SizeBytes 0 -Format $Format @extra
        $info.VirtualSize | Should -Be 0
        $check = Get-QemuCheck $info.Path
        $check.leaks | Should -BeNullOrEmpty
        $check.corruptions | Should -BeNullOrEmpty
        $LASTEXITCODE | Should -Be 0
    }

    It 'Convert-VDisk of an empty file writes a clean empty qcow2' -Skip:$SkipQemu {
        $null = New-Item -ItemType File -Path "$folder/empty.img"
        $info = Convert-VDisk -LiteralPath "$folder/empty.img" -DestinationPath "$folder/converted.qcow2" -PassThru
        $info.VirtualSize | Should -Be 0
        $null = Invoke-QemuImg @('check', "$folder/converted.qcow2")
    }

    It 'New-VDisk -SizeBytes 0 for VMDK is InvalidArgument (qemu-img makes one it cannot open)' {
        New-VDisk -Path "$folder/empty.vmdk" -SizeBytes 0 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        "$folder/empty.vmdk" | Should -Not -Exist
    }
}

Describe 'Probing never follows a guest''s text out of the image''s folder' {
    BeforeAll {
        $folder = New-TestFolder
        $null = New-Item -ItemType Directory -Path "$folder/images", "$folder/host"
        Set-Content -LiteralPath "$folder/host/secret.txt" -Value 'host secret' -NoNewline
        $descriptor = "# Disk DescriptorFile`nversion=1`nCID=12345678`nparentCID=ffffffff`ncreateType=`"monolithicFlat`"`nRW 1 FLAT `"$folder/host/secret.txt`" 0`n"
        # A 2 MiB raw disk whose guest wrote that descriptor into its first sector.
        $disk = (New-VDisk -Path "$folder/images/guest.img" -SizeBytes 2MB).Path
        Set-FileBytes $disk 0 ([System.Text.Encoding]::ASCII.GetBytes($descriptor))
        # The same text as a small file of its own.
        Set-Content -LiteralPath "$folder/images/small.vmdk" -Value $descriptor -NoNewline
    }

    It 'converts a raw disk with a planted descriptor as raw, warning as qemu-img does and naming -SourceFormat' {
        $info = Convert-VDisk -LiteralPath $disk -DestinationPath "$folder/images/copy.raw" -PassThru -WarningVariable warnings -WarningAction SilentlyContinue -ErrorAction Stop
        $info.Format | Should -Be 'Raw'
        $info.VirtualSize | Should -Be 2MB
        $warnings.Count | Should -Be 1
        "$($warnings[0])" | Should -BeLike "Image format was not specified for '$disk' and probing guessed raw*"
        "$($warnings[0])" | Should -BeLike '*-SourceFormat*'
        (Get-FileHash "$folder/images/copy.raw").Hash | Should -Be (Get-FileHash $disk).Hash
    }

    It 'gives no warning with -SourceFormat Raw' {
        $null = Convert-VDisk -LiteralPath $disk -DestinationPath "$folder/images/copy2.raw" -SourceFormat Raw -WarningVariable warnings -ErrorAction Stop
        $warnings | Should -BeNullOrEmpty
    }

    It 'refuses a probed descriptor whose extent lies outside its folder, naming the file and -SourceFormat' {
        Convert-VDisk -LiteralPath "$folder/images/small.vmdk" -DestinationPath "$folder/images/small.raw" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Convert-VDisk')
        $err[0].TargetObject | Should -Be "$folder/images/small.vmdk"
        "$($err[0])" | Should -BeLike "*$folder/host/secret.txt*outside its folder*-SourceFormat Vmdk*"
        "$folder/images/small.raw" | Should -Not -Exist
    }

    It 'follows the extent of a descriptor declared with -SourceFormat Vmdk or -Format Vmdk' {
        $null = Convert-VDisk -LiteralPath "$folder/images/small.vmdk" -DestinationPath "$folder/images/declared.raw" -SourceFormat Vmdk -ErrorAction Stop
        [System.Text.Encoding]::ASCII.GetString([System.IO.File]::ReadAllBytes("$folder/images/declared.raw"), 0, 11) | Should -Be 'host secret'
        (Get-VDisk -LiteralPath "$folder/images/small.vmdk" -Format Vmdk -ErrorAction Stop).Subformat | Should -Be 'monolithicFlat'
        (Get-VDiskChain -LiteralPath "$folder/images/small.vmdk" -Format Vmdk -ErrorAction Stop).Format | Should -Be 'Vmdk'
    }
}

Describe 'Convert-VDisk -PassThru' {
    It 'describes the output in the format it wrote, even when its data reads like a descriptor' {
        $folder = New-TestFolder
        Set-Content -LiteralPath "$folder/a.vmdk" -NoNewline -Value "# Disk DescriptorFile`nversion=1`nCID=12345678`nparentCID=ffffffff`ncreateType=`"monolithicFlat`"`nRW 1 FLAT `"a-flat.vmdk`" 0`n"
        $null = New-Item -ItemType SymbolicLink -Path "$folder/a-flat.vmdk" -Target "$folder/a.vmdk"
        $info = Convert-VDisk -LiteralPath "$folder/a.vmdk" -DestinationPath "$folder/out.raw" -PassThru -ErrorVariable err -WarningAction SilentlyContinue
        $err | Should -BeNullOrEmpty
        $info.Format | Should -Be 'Raw'
        $info.Path | Should -Be "$folder/out.raw"
        $info.VirtualSize | Should -Be 512
    }
}

Describe 'A qcow2 virtual size that is not a whole number of sectors' {
    It 'is rounded down to whole sectors by Get-VDisk and Convert-VDisk, as QEMU does' {
        $folder = New-TestFolder
        $image = (New-VDisk -Path "$folder/odd.qcow2" -SizeBytes 64MB).Path
        $size = [byte[]]::new(8)
        [System.Buffers.Binary.BinaryPrimitives]::WriteUInt64BigEndian($size, 64MB + 1)
        Set-FileBytes $image 24 $size
        (Get-VDisk -LiteralPath $image).VirtualSize | Should -Be 64MB
        (Convert-VDisk -LiteralPath $image -DestinationPath "$folder/odd.raw" -PassThru).VirtualSize | Should -Be 64MB
        (Get-Item "$folder/odd.raw").Length | Should -Be 64MB
    }

    It 'agrees with qemu-img info' -Skip:$SkipQemu {
        $folder = New-TestFolder
        $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', "$folder/q.qcow2", '64M')
        $size = [byte[]]::new(8)
        [System.Buffers.Binary.BinaryPrimitives]::WriteUInt64BigEndian($size, 64MB + 1)
        Set-FileBytes "$folder/q.qcow2" 24 $size
        (Get-VDisk -LiteralPath "$folder/q.qcow2").VirtualSize | Should -Be (Get-QemuInfo "$folder/q.qcow2").'virtual-size'
    }
}
